-- After a reprocess claim: the day's recordings it would have taken but another run's lease
-- kept from it (discover_claim.sql's choice without the lease), each with its holder.
SELECT id, last_run_id AS holder
FROM recordings
WHERE bucket = :bucket
  AND call_date = :call_date
  AND starts_with(object_key, :prefix)
  AND status IN ('pending', 'done', 'chunked', 'failed')
  AND NOT (status = 'pending' AND attempts >= :max_attempts)
  AND lease_until >= now() AND last_run_id <> :run_id
  AND NOT EXISTS (SELECT 1 FROM recordings AS n
                  WHERE n.bucket = recordings.bucket AND n.object_key = recordings.object_key
                    AND n.id > recordings.id AND n.status <> 'superseded')
ORDER BY id
