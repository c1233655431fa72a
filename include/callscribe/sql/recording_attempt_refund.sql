-- The store was down, not the recording at fault: the attempt just counted is given back
-- (the task's retry counts it again).
UPDATE recordings
SET attempts = GREATEST(attempts - 1, 0), attempted_run_id = NULL, chunking_since = NULL
WHERE id = :id AND attempted_run_id = :run_id
