-- The chunker has read a recording's bytes (:sha256), under the copies lock
-- (discover_copy_lock.sql). Discovery matched copies by etag, which differs for the same bytes
-- uploaded in parts or copied server-side: a key whose bytes another key holds, on its day or
-- within :window days of it, is that key's `duplicate` and is not chunked. The other key must
-- be the current upload of its key and transcribed, or on its way: chunked or being chunked now
-- (its bytes recorded) under a live lease, so of two keys read at once the first is the
-- original. A key being chunked again after a failure (attempts left, or a reprocess) is
-- `failed` until it is chunked: its chunking mark (recording_attempt.sql) says it is on its way.
-- Two keys of one etag (copies freed together: recording_copies_free.sql) are said the same
-- content, not another etag. A row already `done` (a reprocess) keeps its transcript and only records its bytes.
-- Only the run that owns the row may touch it (as recording_chunked.sql). Returns the row and the
-- original it repeats, if any; no row when the run no longer owns it.
WITH me AS (
    SELECT id, bucket, object_key, call_date, status, etag, size_bytes
    FROM recordings
    WHERE id = :id AND status NOT IN ('superseded', 'quarantined', 'deleted', 'duplicate')
      AND (CAST(:run_id AS text) IS NULL OR last_run_id = :run_id)
), original AS (
    SELECT c.id, c.object_key, c.call_date, c.etag = me.etag AND c.size_bytes = me.size_bytes AS same_etag
    FROM me, recordings AS c
    WHERE me.status <> 'done'
      AND c.content_sha256 = :sha256 AND c.bucket = me.bucket AND c.object_key <> me.object_key
      AND c.call_date BETWEEN me.call_date - CAST(:window AS integer) AND me.call_date + CAST(:window AS integer)
      AND (c.status = 'done'
           OR (c.lease_until > now()
               AND (c.status IN ('pending', 'chunked') OR (c.status = 'failed' AND c.chunking_since IS NOT NULL))))
      AND NOT EXISTS (SELECT 1 FROM recordings AS n
                      WHERE n.bucket = c.bucket AND n.object_key = c.object_key AND n.id > c.id
                        AND n.status <> 'superseded')
    ORDER BY c.status = 'done' DESC, c.id
    LIMIT 1
)
UPDATE recordings AS r
SET content_sha256 = :sha256, updated_at = now(),
    status = CASE WHEN o.id IS NULL THEN r.status ELSE 'duplicate' END,
    duplicate_of = CASE WHEN o.id IS NULL THEN r.duplicate_of ELSE o.id END,
    chunking_since = CASE WHEN o.id IS NULL THEN r.chunking_since END,
    last_error = CASE WHEN o.id IS NULL THEN r.last_error
                      ELSE callscribe_copy_reason(o.object_key, o.call_date, o.id, o.same_etag) END
FROM me LEFT JOIN original AS o ON true
WHERE r.id = me.id
RETURNING r.id, o.id AS original_id, r.last_error
