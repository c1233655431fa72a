-- A new object holding the content of a recording of its day erased on request (its etag and
-- size) is that call again under another key: not transcribed behind the erasure's back.
UPDATE recordings AS d
SET status = 'duplicate', duplicate_of = NULL, last_run_id = :run_id, updated_at = now(),
    last_error = 'same content as a recording erased on request: the same call, not transcribed (erase this key too)'
WHERE d.status = 'pending' AND d.attempts = 0 AND d.call_date = :call_date AND d.size_bytes > 0
  AND (d.lease_until IS NULL OR d.lease_until < now() OR d.last_run_id = :run_id)
  AND EXISTS (SELECT 1 FROM erasures AS e, jsonb_array_elements(e.contents) AS x
              WHERE e.bucket = d.bucket AND e.call_date = d.call_date AND x ->> 'etag' = d.etag AND (x ->> 'size')::bigint = d.size_bytes)
