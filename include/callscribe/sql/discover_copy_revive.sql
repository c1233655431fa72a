-- A copy stands on its original's transcript: once the original has left (gone from the bucket,
-- its key holding another upload now) or failed for good, the copy is a call to transcribe in
-- its own right. So is a copy whose original became a copy itself (a key a run died on, marked the
-- copy of another day's transcribed key: discover_copy_mark.sql), and the same settle marks it
-- again, the copy of the key that holds the transcript (left as it was, it stood on a row without
-- one for good). The day's copies, and the copies on other days of the day's recordings (whose
-- leaving this discovery may just have seen). A copy of a call erased on request (duplicate_of
-- emptied) stays as it is.
-- The two kinds are found apart, each through its own index (the day's status, duplicate_of):
-- one condition with OR read every copy in the table at each settle.
WITH candidate AS (
    SELECT id FROM recordings WHERE call_date = :call_date AND status = 'duplicate'
    UNION
    SELECT d.id FROM recordings AS o JOIN recordings AS d ON d.duplicate_of = o.id
    WHERE o.call_date = :call_date AND d.status = 'duplicate'
)
UPDATE recordings AS d
SET status = 'pending', duplicate_of = NULL, last_error = NULL, last_run_id = NULL, lease_until = NULL, attempts = 0,
    updated_at = now()
FROM recordings AS o
WHERE d.id IN (SELECT id FROM candidate) AND d.status = 'duplicate' AND o.id = d.duplicate_of
  AND (o.status IN ('deleted', 'superseded', 'duplicate')
       OR (o.status = 'failed' AND o.attempts >= :max_attempts)
       OR EXISTS (SELECT 1 FROM recordings AS n
                  WHERE n.bucket = o.bucket AND n.object_key = o.object_key AND n.id > o.id
                    AND n.status <> 'superseded'))
RETURNING d.id, d.call_date
