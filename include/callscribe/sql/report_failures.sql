-- What a run leaves not done, and why.
SELECT object_key, status, last_error FROM recordings
WHERE last_run_id = :run_id AND status IN ('failed', 'quarantined', 'pending', 'chunked')
ORDER BY object_key
