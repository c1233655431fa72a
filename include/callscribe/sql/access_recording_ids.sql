-- The transcribed recording of each of the hits' keys (the newest version).
SELECT DISTINCT ON (bucket, object_key) bucket, object_key, recording_id FROM analytics.recordings
WHERE status = 'done' AND object_key = ANY(:keys)
ORDER BY bucket, object_key, recording_id DESC
