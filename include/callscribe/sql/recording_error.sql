-- A recording failed or was quarantined. One already `done` keeps its state and transcript:
-- a re-run task that meets an object changed since is not a reason to hide the transcript
-- (the next run registers the new version, which supersedes this one when it loads).
-- As for chunking, only the run that owns the recording may mark it.
UPDATE recordings
SET status = CASE WHEN status = 'done' THEN 'done' ELSE :status END,
    last_error = CASE WHEN status = 'done' THEN last_error ELSE :error END,
    updated_at = now(), chunking_since = NULL
WHERE id = :id AND status NOT IN ('superseded', 'quarantined', 'deleted', 'duplicate')
  AND (CAST(:run_id AS text) IS NULL OR last_run_id = :run_id)
