-- The day's recordings under the listed prefix whose object is no longer in the bucket (the
-- listing is in the temp table `listing`), and how many of the prefix's rows are live.
-- A key listed with other content is not gone: discover_supersede.sql handles re-uploads.
SELECT r.id, r.object_key, r.status,
       (SELECT count(*) FROM recordings AS a
        WHERE a.bucket = :bucket AND a.call_date = :call_date AND starts_with(a.object_key, :prefix)
          AND a.status NOT IN ('superseded', 'deleted')) AS live
FROM recordings AS r
WHERE r.bucket = :bucket AND r.call_date = :call_date AND starts_with(r.object_key, :prefix)
  AND r.status NOT IN ('superseded', 'deleted')
  AND NOT EXISTS (SELECT 1 FROM listing AS l WHERE l.bucket = r.bucket AND l.object_key = r.object_key)
ORDER BY r.id
FOR UPDATE OF r
