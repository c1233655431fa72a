-- Rows of the listing's objects whose metadata may have been fixed since it was read: the same
-- content (etag), listed with a later LastModified than the row answers for (a copy onto the key
-- itself with new x-amz-meta-*; discovery.refresh_metadata reads them again). Rows from before
-- migration 0026 answer for nothing yet: they take the listing's time, unread.
WITH baseline AS (
    UPDATE recordings AS r
    SET object_modified = l.last_modified
    FROM listing AS l
    WHERE r.object_modified IS NULL AND l.last_modified IS NOT NULL
      AND r.bucket = l.bucket AND r.object_key = l.object_key AND r.etag = l.etag
    RETURNING r.id
)
SELECT r.id, r.bucket, r.object_key, r.etag, l.last_modified
FROM recordings AS r
JOIN listing AS l ON r.bucket = l.bucket AND r.object_key = l.object_key AND r.etag = l.etag
WHERE r.object_modified < l.last_modified
  AND r.status NOT IN ('superseded', 'deleted')
ORDER BY r.id
