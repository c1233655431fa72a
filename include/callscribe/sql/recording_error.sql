-- A recording failed or was quarantined. One already `done` keeps its state and transcript
-- (a reprocess run, or a re-run task that meets an object changed since: the next run
-- registers the new version, which supersedes this one when it loads), and says that this run
-- could not redo it, as load_failed.sql does: the run's report lists it and a reprocess run's
-- verdict is red for it.
-- As for chunking, only the run that owns the recording may mark it.
-- Its copies (the same bytes under other keys) cannot decode either: quarantined, it leaves them
-- `duplicate`, and their reason says so instead of "transcribed there".
WITH marked AS (
    UPDATE recordings
    SET status = CASE WHEN status = 'done' THEN 'done' ELSE :status END,
        last_error = CASE WHEN status = 'done' THEN 'kept the earlier transcript; this run failed: ' || :error
                          ELSE :error END,
        updated_at = now(), chunking_since = NULL
    WHERE id = :id AND status NOT IN ('superseded', 'quarantined', 'deleted', 'duplicate')
      AND (CAST(:run_id AS text) IS NULL OR last_run_id = :run_id)
    RETURNING id, status, object_key, call_date, last_error
)
UPDATE recordings AS c
SET last_error = 'same content as ' || m.object_key || ' of ' || CAST(m.call_date AS text)
                 || ' (recording ' || m.id || '), quarantined there: ' || m.last_error,
    updated_at = now()
FROM marked AS m
WHERE m.status = 'quarantined' AND c.duplicate_of = m.id AND c.status = 'duplicate'
