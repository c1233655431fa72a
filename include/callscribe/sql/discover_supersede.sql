-- Older versions of re-uploaded objects that never got a transcript are superseded at
-- once (their content is gone from the store); done ones keep their transcript until
-- the new version's transcript is loaded (load_replace.sql). A copy of another key's call
-- (`duplicate`) no longer holds that call either.
UPDATE recordings AS o
SET status = 'superseded', last_error = 'replaced by a newer upload of the same key', updated_at = now(),
    duplicate_of = NULL
WHERE o.call_date = :call_date
  AND o.status IN ('pending', 'chunked', 'failed', 'duplicate')
  AND EXISTS (
      SELECT 1 FROM recordings AS n
      WHERE n.bucket = o.bucket AND n.object_key = o.object_key AND n.id > o.id
  )
