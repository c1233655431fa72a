-- Register objects not seen before (anti-join on bucket, key and etag).
INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status, last_error, last_run_id)
SELECT l.bucket, l.object_key, l.etag, l.size_bytes, :call_date, l.call_id, l.status, l.last_error, :run_id
FROM listing AS l
WHERE NOT EXISTS (
    SELECT 1 FROM recordings AS r
    WHERE r.bucket = l.bucket AND r.object_key = l.object_key AND r.etag = l.etag
)
ON CONFLICT ON CONSTRAINT recordings_object_version DO NOTHING
