-- New versions that ended for good without a transcript (quarantined, a copy of another key's
-- call, or failed out of attempts) and are the newest of their key while an older version is still done: those a run
-- ended (:run_id, at its report), or all of a day's (:call_date, at each discovery of it: a run
-- that died before its report, or rows from before this step existed). Newest among the rows that
-- are not superseded: a restore supersedes a newer row (discover_restored.sql).
SELECT n.id FROM recordings AS n
WHERE (CAST(:run_id AS text) IS NULL OR n.last_run_id = :run_id)
  AND (CAST(:call_date AS date) IS NULL OR n.call_date = :call_date)
  AND (n.status IN ('quarantined', 'duplicate') OR (n.status = 'failed' AND n.attempts >= :max_attempts))
  AND NOT EXISTS (SELECT 1 FROM recordings AS m
                  WHERE m.bucket = n.bucket AND m.object_key = n.object_key AND m.id > n.id
                        AND m.status <> 'superseded')
  AND EXISTS (SELECT 1 FROM recordings AS o
              WHERE o.bucket = n.bucket AND o.object_key = n.object_key AND o.id < n.id AND o.status = 'done')
ORDER BY n.id
