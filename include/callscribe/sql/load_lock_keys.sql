-- Serialise loads that touch versions of the same object (a reprocess of the old version and
-- the load of a new one): each sees what the other committed. Always taken in key order.
SELECT pg_advisory_xact_lock(hashtextextended(k.bucket || '/' || k.object_key, 0))
FROM (SELECT DISTINCT bucket, object_key FROM recordings WHERE id = ANY(:ids) ORDER BY bucket, object_key) AS k
