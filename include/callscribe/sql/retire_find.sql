-- New versions this run ended for good without a transcript (quarantined, or failed out of
-- attempts) that are the newest of their key while an older version is still done.
SELECT n.id FROM recordings AS n
WHERE n.last_run_id = :run_id
  AND (n.status = 'quarantined' OR (n.status = 'failed' AND n.attempts >= :max_attempts))
  AND NOT EXISTS (SELECT 1 FROM recordings AS m
                  WHERE m.bucket = n.bucket AND m.object_key = n.object_key AND m.id > n.id)
  AND EXISTS (SELECT 1 FROM recordings AS o
              WHERE o.bucket = n.bucket AND o.object_key = n.object_key AND o.id < n.id AND o.status = 'done')
ORDER BY n.id
