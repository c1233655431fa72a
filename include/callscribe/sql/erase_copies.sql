-- Other keys holding the same content as the versions being erased (etag and size, or the bytes
-- the chunker read), on their day or within :window days of it, and copies marked of them (under
-- a wider window, or by their bytes): the same call uploaded twice, which the erasure names so it
-- can be erased too.
WITH erased AS (
    SELECT id, bucket, object_key, etag, size_bytes, content_sha256, call_date
    FROM recordings WHERE id = ANY(CAST(:ids AS bigint[]))
), candidate AS (
    SELECT c.id, e.object_key AS erased_key
    FROM erased AS e JOIN recordings AS c ON c.bucket = e.bucket AND c.etag = e.etag AND c.size_bytes = e.size_bytes
    WHERE c.call_date BETWEEN e.call_date - CAST(:window AS integer) AND e.call_date + CAST(:window AS integer)
    UNION ALL
    SELECT c.id, e.object_key
    FROM erased AS e JOIN recordings AS c ON c.content_sha256 = e.content_sha256 AND c.bucket = e.bucket
    WHERE c.call_date BETWEEN e.call_date - CAST(:window AS integer) AND e.call_date + CAST(:window AS integer)
    UNION ALL
    SELECT c.id, e.object_key
    FROM erased AS e JOIN recordings AS c ON c.duplicate_of = e.id
)
SELECT DISTINCT c.object_key
FROM candidate JOIN recordings AS c ON c.id = candidate.id
WHERE c.object_key <> candidate.erased_key AND c.status NOT IN ('deleted', 'superseded')
  AND NOT EXISTS (SELECT 1 FROM recordings AS n  -- what the key holds now, not an older upload
                  WHERE n.bucket = c.bucket AND n.object_key = c.object_key AND n.id > c.id
                    AND n.status <> 'superseded')
ORDER BY c.object_key
