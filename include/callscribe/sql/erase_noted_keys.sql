-- The object keys registered under a key hash (an erasure note names only the hash): of the note's
-- day when it has one (the day's rows, by the call_date index), else of every day.
SELECT DISTINCT object_key FROM recordings
WHERE bucket = :bucket
  AND (CAST(:call_date AS date) IS NULL OR call_date = CAST(:call_date AS date))
  AND encode(sha256(convert_to(object_key, 'UTF8')), 'hex') = :hash
ORDER BY object_key
