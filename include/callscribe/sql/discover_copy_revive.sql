-- A copy stands on its original's transcript: once the original has left (gone from the bucket,
-- or its key holds another upload now) the copy is a call to transcribe in its own right.
-- A copy whose original was erased on request (duplicate_of emptied) stays as it is.
UPDATE recordings AS d
SET status = 'pending', duplicate_of = NULL, last_error = NULL, last_run_id = NULL, attempts = 0,
    updated_at = now()
FROM recordings AS o
WHERE d.status = 'duplicate' AND d.call_date = :call_date AND o.id = d.duplicate_of
  AND (o.status IN ('deleted', 'superseded')
       OR EXISTS (SELECT 1 FROM recordings AS n
                  WHERE n.bucket = o.bucket AND n.object_key = o.object_key AND n.id > o.id
                    AND n.status <> 'superseded'))
