-- An object deleted earlier is back in the bucket with the same content, and no newer version
-- has a row (discover_reupload.sql handles that case): it is to be transcribed again from the
-- start (its earlier transcript was removed with it).
UPDATE recordings AS r
SET status = 'pending', attempts = 0, loads = 0, last_error = NULL, loaded_run_id = NULL, updated_at = now(),
    duplicate_of = NULL
FROM listing AS l
WHERE r.status = 'deleted' AND r.call_date = :call_date
  AND l.bucket = r.bucket AND l.object_key = r.object_key AND l.etag = r.etag
  AND NOT EXISTS (SELECT 1 FROM recordings AS n
                  WHERE n.bucket = r.bucket AND n.object_key = r.object_key AND n.id > r.id)
