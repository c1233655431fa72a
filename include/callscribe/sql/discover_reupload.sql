-- An object is back with the content of an old row while a newer version has a row of its
-- own: deleted earlier and uploaded again, or overwritten and then restored (K = A, then B,
-- then A again). The old row holds no transcript (deleting or superseding a row drops it), so
-- it goes, and the content registers again as the newest version, which replaces the other
-- one when it loads. Without this the restored content matched the old row and was never
-- registered: the day stayed red with the wrong content's transcript searchable.
DELETE FROM recordings AS r
USING listing AS l
WHERE r.status IN ('deleted', 'superseded') AND r.call_date = :call_date
  AND l.bucket = r.bucket AND l.object_key = r.object_key AND l.etag = r.etag
  AND EXISTS (SELECT 1 FROM recordings AS n
              WHERE n.bucket = r.bucket AND n.object_key = r.object_key AND n.id > r.id)
