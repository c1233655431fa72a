-- An object deleted earlier is back with the content of an old row while a newer version
-- has a row of its own: the old row (it holds no transcript) goes, so the content registers
-- again as the newest version and replaces the other one when it loads.
DELETE FROM recordings AS r
USING listing AS l
WHERE r.status = 'deleted' AND r.call_date = :call_date
  AND l.bucket = r.bucket AND l.object_key = r.object_key AND l.etag = r.etag
  AND EXISTS (SELECT 1 FROM recordings AS n
              WHERE n.bucket = r.bucket AND n.object_key = r.object_key AND n.id > r.id)
