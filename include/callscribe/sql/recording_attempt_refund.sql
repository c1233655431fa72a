-- The store was down, not the recording at fault: the attempt just counted is given back
-- (the task's retry counts it again). A refund note (:since, its try's chunking mark) pays only
-- the try that wrote it: not a later try's mark, which may be a crash on the file.
UPDATE recordings
SET attempts = GREATEST(attempts - 1, 0), attempted_run_id = NULL, chunking_since = NULL
WHERE id = :id AND attempted_run_id = :run_id
  AND (CAST(:since AS timestamptz) IS NULL OR chunking_since = CAST(:since AS timestamptz))
