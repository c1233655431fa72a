-- Copies are matched across days, so two discoveries of different days can each see the other's
-- key of one call as untaken and both keep theirs. Settling copies (and the claim that follows
-- it) is one at a time: each sees what the one before committed. The chunker takes it too, to
-- compare a recording's bytes with other keys' (recording_bytes.sql). Taken before any row is
-- changed in the transaction, after the erasure lock where there is one (discover_erasure_lock.sql).
SELECT pg_advisory_xact_lock(hashtext('callscribe_copies'))
