-- Per-run figures, from the recordings this run claimed.
SELECT
    count(*)                                            AS recordings_found,
    count(*) FILTER (WHERE status = 'done')             AS recordings_done,
    count(*) FILTER (WHERE status = 'failed')           AS recordings_failed,
    count(*) FILTER (WHERE status = 'quarantined')      AS recordings_quarantined,
    count(*) FILTER (WHERE status = 'duplicate')        AS recordings_duplicate,
    count(*) FILTER (WHERE status IN ('pending', 'chunked')) AS recordings_unfinished,
    COALESCE(sum(duration_s) FILTER (WHERE status = 'done'), 0) AS audio_s,
    (SELECT count(*) FROM segments s JOIN recordings r2 ON r2.id = s.recording_id
      WHERE r2.last_run_id = :run_id)                   AS segments,
    (SELECT COALESCE(sum(model_s), 0) FROM batch_metrics b WHERE b.run_id = :run_id) AS model_s,
    (SELECT count(DISTINCT job_id) FROM batch_metrics b WHERE b.run_id = :run_id)    AS jobs
FROM recordings
WHERE last_run_id = :run_id
