-- The copies that stood on a row (:id) follow it to the recording it turned out to repeat
-- (:prior_id), in the chunker's transaction: a key's new upload whose transcribed version takes its
-- etag over (recording_same_call_take.sql: left on the superseded row, a copy stood on no transcript,
-- and the run that accounted for it was red for it), or a key found a copy by its bytes
-- (recording_bytes.sql: a key a run died on, its retry finding another day's transcript). Only those
-- within the copy window of that recording; the others are freed by the next discovery of their day
-- or its (discover_copy_revive.sql).
UPDATE recordings AS d
SET duplicate_of = o.id, updated_at = now(),
    last_error = callscribe_copy_reason(o.object_key, o.call_date, o.id,
                                        d.etag = o.etag AND d.size_bytes = o.size_bytes)
FROM recordings AS o
WHERE o.id = :prior_id AND d.duplicate_of = :id AND d.status = 'duplicate'
  AND d.call_date BETWEEN o.call_date - CAST(:window AS integer) AND o.call_date + CAST(:window AS integer)
