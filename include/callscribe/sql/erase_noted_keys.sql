-- The object keys registered under key hashes (an erasure note names only the hash), with their
-- hash: of the notes' day when they have one (the day's rows, by the call_date index), else of
-- every day (a sha256 of every key of the bucket: asked once for all such notes, not once each).
SELECT DISTINCT encode(sha256(convert_to(object_key, 'UTF8')), 'hex') AS key_sha256, object_key
FROM recordings
WHERE bucket = :bucket
  AND (CAST(:call_date AS date) IS NULL OR call_date = CAST(:call_date AS date))
  AND encode(sha256(convert_to(object_key, 'UTF8')), 'hex') = ANY(CAST(:hashes AS text[]))
ORDER BY key_sha256, object_key
