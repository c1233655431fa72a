-- First in an erasure's transaction: no registration is under way until it commits
-- (discover_erasure_lock.sql), so the versions it reads are every version there will be.
SELECT pg_advisory_xact_lock(hashtext('callscribe_erasures'))
