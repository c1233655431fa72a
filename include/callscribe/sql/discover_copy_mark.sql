-- A new object of the day whose content (etag and size) a live recording of that day under
-- another key already holds is the same call uploaded twice: `duplicate` of the oldest such
-- recording, never claimed, and this run's to report. The original must be the current
-- version of its key and on its way to a transcript (a quarantined one is not: a copy under
-- an audio name is looked at on its own). Only rows never claimed are marked, so a copy
-- revived above is compared again (with several copies, the oldest is transcribed).
UPDATE recordings AS d
SET status = 'duplicate', duplicate_of = o.id, last_run_id = :run_id, updated_at = now(),
    last_error = 'same content as ' || o.object_key || ' (recording ' || o.id || '), transcribed once there'
FROM recordings AS o
WHERE d.status = 'pending' AND d.attempts = 0 AND d.call_date = :call_date AND d.size_bytes > 0
  AND (d.lease_until IS NULL OR d.lease_until < now() OR d.last_run_id = :run_id)  -- not another run's now
  AND o.id = (
      SELECT min(c.id) FROM recordings AS c
      WHERE c.bucket = d.bucket AND c.call_date = d.call_date AND c.etag = d.etag
        AND c.size_bytes = d.size_bytes AND c.object_key <> d.object_key AND c.id < d.id
        AND c.status IN ('pending', 'chunked', 'done', 'failed')
        AND NOT EXISTS (SELECT 1 FROM recordings AS n
                        WHERE n.bucket = c.bucket AND n.object_key = c.object_key AND n.id > c.id
                          AND n.status <> 'superseded')
  )
