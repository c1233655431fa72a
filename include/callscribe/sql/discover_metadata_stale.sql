-- Rows of the listing's objects whose metadata may have been fixed since it was read: the same
-- content (etag), listed with a later LastModified than the row answers for (a copy onto the key
-- itself with new x-amz-meta-*; discovery.refresh_metadata reads them again). Rows from before
-- migration 0026 answer for nothing yet: they answer for the time they were registered (their
-- metadata was read after it), so a fix made since, before or after the upgrade, is read at their
-- first listing instead of taken as read; one listed as no later stands for its listing's time.
WITH baseline AS (
    UPDATE recordings AS r
    SET object_modified = LEAST(l.last_modified, r.discovered_at)
    FROM listing AS l
    WHERE r.call_date = :call_date AND r.object_modified IS NULL AND l.last_modified IS NOT NULL
      AND r.bucket = l.bucket AND r.object_key = l.object_key AND r.etag = l.etag
    RETURNING r.id
)
SELECT r.id, r.bucket, r.object_key, r.etag, l.last_modified
FROM recordings AS r
JOIN listing AS l ON r.bucket = l.bucket AND r.object_key = l.object_key AND r.etag = l.etag
-- (The statement sees the rows as they were before its baseline.) The day's rows alone (its
-- listing's keys are registered under it): the join never reads the whole table's.
WHERE r.call_date = :call_date
  AND r.status NOT IN ('superseded', 'deleted')
  AND (COALESCE(r.object_modified, r.discovered_at) < l.last_modified
       -- LastModified has whole seconds: a fix later in the second the metadata was last read in
       -- (by the chunker, or a discovery) leaves it where it was. Read once more when the last read
       -- began before that second, and the clocks' disagreement (skew_s), were over.
       OR (r.object_modified = l.last_modified
           AND GREATEST(r.metadata_read_at, r.metadata_checked_at)
               < l.last_modified + make_interval(secs => 1 + CAST(:skew_s AS double precision))))
  -- A read the store refused for this LastModified waits for its back-off; a change is read at once.
  AND (r.metadata_retry_at IS NULL OR r.metadata_retry_at <= now()
       OR r.metadata_refused_modified IS DISTINCT FROM l.last_modified)
ORDER BY r.id
