-- The recordings of a shard its run may still load, locked until the load commits, with the day
-- and agent the loader writes on their segments and their channel count (a transcript row each).
-- A shard loads only rows its run owns (a newer run that claimed a recording since takes
-- it over), never a superseded version or one with a newer version done, and a row already
-- holding this run's transcript is left as it is: loading the same shard again is a no-op.
SELECT r.id, r.call_date, r.agent_id, r.channels FROM recordings AS r
WHERE r.id = ANY(:ids)
  AND r.last_run_id = :run_id
  AND r.status IN ('pending', 'chunked', 'failed', 'done')
  AND NOT (r.status = 'done' AND r.loaded_run_id IS NOT DISTINCT FROM :run_id)
  AND NOT EXISTS (
      SELECT 1 FROM recordings AS n
      WHERE n.bucket = r.bucket AND n.object_key = r.object_key AND n.id > r.id AND n.status = 'done'
  )
ORDER BY r.id
FOR UPDATE OF r
