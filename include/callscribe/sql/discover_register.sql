-- Register objects not seen before (anti-join on bucket, key and etag). Nothing under a key
-- erased on request (erasures, by a hash of the key) is registered again, whatever its content.
-- A pending row belongs to no run until one claims it (a run limited by max_recordings leaves
-- the rest to the next); one quarantined here is this run's to report.
INSERT INTO recordings (bucket, object_key, etag, size_bytes, call_date, call_id, status, last_error, last_run_id,
                        object_modified)
SELECT l.bucket, l.object_key, l.etag, l.size_bytes, :call_date, l.call_id, l.status, l.last_error,
       CASE WHEN l.status = 'pending' THEN NULL ELSE :run_id END, l.last_modified
FROM listing AS l
WHERE NOT EXISTS (
    SELECT 1 FROM recordings AS r
    WHERE r.bucket = l.bucket AND r.object_key = l.object_key AND r.etag = l.etag
)
AND NOT EXISTS (
    SELECT 1 FROM erasures AS e
    WHERE e.bucket = l.bucket AND e.key_sha256 = encode(sha256(convert_to(l.object_key, 'UTF8')), 'hex')
)
-- Ids in key order: of copies listed together, the first by name is the one transcribed.
ORDER BY l.object_key
ON CONFLICT ON CONSTRAINT recordings_object_version DO NOTHING
