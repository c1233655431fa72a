-- The chunker has read a new version's bytes (:sha256), under the copies lock: the same bytes as
-- the key's transcribed version are the same call, its upload metadata fixed by a copy onto the key
-- that changed the etag (AWS S3: the copy of a multipart, SSE-KMS or SSE-C object). Returns that
-- version, locked, for the chunker to give it the new upload (recording_same_call_retire.sql,
-- recording_same_call_take.sql, then the fix as discovery.refresh_metadata gives it). The new row
-- must be the run's (as recording_bytes.sql), and the done one the key's current version but for
-- it (rows between them superseded) and held by no live run, and the run no reprocess: else it goes
-- on as a new version.
SELECT o.id, o.etag, o.status, o.channels, o.metadata
FROM recordings AS me
JOIN recordings AS o ON o.bucket = me.bucket AND o.object_key = me.object_key AND o.id < me.id
WHERE me.id = :id AND me.status IN ('pending', 'chunked', 'failed')
  AND (CAST(:run_id AS text) IS NULL OR me.last_run_id = :run_id)
  AND o.status = 'done' AND o.content_sha256 = :sha256
  AND (o.lease_until IS NULL OR o.lease_until <= now())
  -- Not in a reprocess run (its claim records what it held back, an empty list too): it is to
  -- transcribe the day's calls again, and this version is the call it took.
  AND NOT EXISTS (SELECT 1 FROM pipeline_runs AS p WHERE p.run_id = :run_id AND p.held_back IS NOT NULL)
  AND NOT EXISTS (SELECT 1 FROM recordings AS n
                  WHERE n.bucket = o.bucket AND n.object_key = o.object_key AND n.id > o.id AND n.id <> me.id
                    AND n.status <> 'superseded')
ORDER BY o.id DESC
LIMIT 1
FOR UPDATE OF o
