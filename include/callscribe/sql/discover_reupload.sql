-- An object is back with the content of an old row while a newer version has a row of its
-- own: deleted earlier and uploaded again, or overwritten and then restored (K = A, then B,
-- then A again). The old row holds no transcript (deleting or superseding a row drops it); it
-- gives up its etag (the row id appended, so the name stays unique) and the content registers
-- again as the newest version, which replaces the other one when it loads. The old row stays,
-- so erasing the key still finds its speech pack and its rows in the runs' work files.
-- (Matched on the old etag, the restored content was never registered: the day stayed red with
-- the wrong content's transcript searchable.)
UPDATE recordings AS r
SET etag = r.etag || '#' || r.id, updated_at = now()
FROM listing AS l
WHERE r.status IN ('deleted', 'superseded') AND r.call_date = :call_date
  AND l.bucket = r.bucket AND l.object_key = r.object_key AND l.etag = r.etag
  -- A superseded row is newest when a restore superseded it (discover_restored.sql); a deleted
  -- one with no newer row is revived as it is (discover_revive.sql).
  AND (r.status = 'superseded'
       OR EXISTS (SELECT 1 FROM recordings AS n
                  WHERE n.bucket = r.bucket AND n.object_key = r.object_key AND n.id > r.id))
