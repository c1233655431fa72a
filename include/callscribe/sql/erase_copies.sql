-- Other keys holding the same content as the versions being erased, on their day: the same
-- call uploaded twice, which the erasure names so it can be erased too.
SELECT DISTINCT c.object_key
FROM recordings AS r
JOIN recordings AS c ON c.bucket = r.bucket AND c.call_date = r.call_date AND c.etag = r.etag
                    AND c.size_bytes = r.size_bytes AND c.object_key <> r.object_key
WHERE r.id = ANY(CAST(:ids AS bigint[])) AND c.status NOT IN ('deleted', 'superseded')
ORDER BY c.object_key
