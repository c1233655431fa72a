-- After a reprocess claim without a limit: the day's recordings it was to take (discover_claim.sql's
-- choice, lease or not) but did not. Another run's lease kept them from it, or a lock held at that
-- moment (SKIP LOCKED: a run claiming or releasing them); each with the run that last had it.
SELECT id, last_run_id AS holder
FROM recordings
WHERE bucket = :bucket
  AND call_date = :call_date
  AND starts_with(object_key, :prefix)
  AND status IN ('done', 'chunked', 'failed', 'pending')
  AND NOT (status = 'pending' AND attempts >= :max_attempts)
  AND NOT (id = ANY(:claimed))
  AND NOT EXISTS (SELECT 1 FROM recordings AS n
                  WHERE n.bucket = recordings.bucket AND n.object_key = recordings.object_key
                    AND n.id > recordings.id AND n.status <> 'superseded')
ORDER BY id
