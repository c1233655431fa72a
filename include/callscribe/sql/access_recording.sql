-- A recording as the analyst views show it, only when transcribed: by id, or the newest
-- version under a key; with the etag of the content that was transcribed.
SELECT recording_id, bucket, object_key, etag FROM analytics.recordings
WHERE status = 'done'
  AND (recording_id = CAST(:rid AS bigint) OR object_key = CAST(:key AS text))
ORDER BY recording_id DESC LIMIT 1
