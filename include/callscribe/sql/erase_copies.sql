-- Other keys holding the same content as the versions being erased, on their day or within
-- :window days of it: the same call uploaded twice, which the erasure names so it can be erased too.
SELECT DISTINCT c.object_key
FROM recordings AS r
JOIN recordings AS c ON c.bucket = r.bucket AND c.etag = r.etag AND c.size_bytes = r.size_bytes
                    AND c.object_key <> r.object_key
                    AND (c.call_date BETWEEN r.call_date - CAST(:window AS integer)
                                         AND r.call_date + CAST(:window AS integer)
                         OR c.duplicate_of = r.id)  -- marked under a wider window
WHERE r.id = ANY(CAST(:ids AS bigint[])) AND c.status NOT IN ('deleted', 'superseded')
  AND NOT EXISTS (SELECT 1 FROM recordings AS n  -- what the key holds now, not an older upload
                  WHERE n.bucket = c.bucket AND n.object_key = c.object_key AND n.id > c.id
                    AND n.status <> 'superseded')
ORDER BY c.object_key
