-- Every version of one object, locked, with what an erasure removes or must wait for.
SELECT r.id, r.call_date, r.etag, r.size_bytes, r.content_sha256, r.status, r.last_run_id,
       COALESCE(r.lease_until > now(), false) AS leased,
       (SELECT count(*) FROM segments AS s WHERE s.recording_id = r.id) AS segments
FROM recordings AS r
WHERE r.bucket = :bucket AND r.object_key = :key
ORDER BY r.id
FOR UPDATE OF r
