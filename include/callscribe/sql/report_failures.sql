-- What a run leaves not done, and why (and what it could not redo, when reprocessing).
SELECT object_key, status, last_error FROM recordings
WHERE last_run_id = :run_id
  AND (status IN ('failed', 'quarantined', 'pending', 'chunked') OR (status = 'done' AND last_error IS NOT NULL))
ORDER BY object_key
