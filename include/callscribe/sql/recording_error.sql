-- A recording failed or was quarantined. One already `done` keeps its state and transcript
-- (a reprocess run, or a re-run task that meets an object changed since: the next run
-- registers the new version, which supersedes this one when it loads), and says that this run
-- could not redo it, as load_failed.sql does: the run's report lists it and a reprocess run's
-- verdict is red for it.
-- As for chunking, only the run that owns the recording may mark it.
UPDATE recordings
SET status = CASE WHEN status = 'done' THEN 'done' ELSE :status END,
    last_error = CASE WHEN status = 'done' THEN 'kept the earlier transcript; this run failed: ' || :error
                      ELSE :error END,
    updated_at = now(), chunking_since = NULL
WHERE id = :id AND status NOT IN ('superseded', 'quarantined', 'deleted', 'duplicate')
  AND (CAST(:run_id AS text) IS NULL OR last_run_id = :run_id)
