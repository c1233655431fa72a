SELECT object_key, status, last_error FROM recordings
WHERE last_run_id = :run_id AND status IN ('failed', 'quarantined')
ORDER BY object_key
