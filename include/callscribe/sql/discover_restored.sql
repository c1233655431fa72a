-- A key put back to the content of an older version that still stands (done, or quarantined)
-- while a newer upload has not been transcribed: the newer upload's content is gone from the
-- bucket, so it is superseded now. Left alone, it would fail "object changed since discovery"
-- in every run until, out of attempts, it retired the transcript of what the bucket holds.
-- Only a newer row registered before this listing began: a listing older than it (another run
-- of the day registered the upload meanwhile) shows the old content without its coming back.
UPDATE recordings AS n
SET status = 'superseded', last_error = 'the key was restored to an earlier version''s content (recording '
        || o.id || ')', lease_until = NULL, updated_at = now(), duplicate_of = NULL
FROM listing AS l, recordings AS o
WHERE n.call_date = :call_date
  AND n.status IN ('pending', 'chunked', 'failed', 'quarantined', 'duplicate')
  AND l.bucket = n.bucket AND l.object_key = n.object_key AND l.etag <> n.etag
  AND o.bucket = n.bucket AND o.object_key = n.object_key AND o.etag = l.etag AND o.id < n.id
  AND o.status IN ('done', 'quarantined')
  AND (CAST(:listed_at AS timestamptz) IS NULL OR n.discovered_at < :listed_at)
