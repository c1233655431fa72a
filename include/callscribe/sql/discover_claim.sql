-- The day's recordings this run should process; stamps them with the run id.
UPDATE recordings SET last_run_id = :run_id, updated_at = now()
WHERE id IN (
    SELECT id FROM recordings
    WHERE bucket = :bucket
      AND call_date = :call_date
      AND starts_with(object_key, :prefix)
      AND (
          status IN ('pending', 'chunked')
          OR (status = 'failed' AND attempts < :max_attempts)
          OR (CAST(:reprocess AS boolean) AND status = 'done')
      )
    ORDER BY id
    LIMIT :max_recordings
)
RETURNING id
