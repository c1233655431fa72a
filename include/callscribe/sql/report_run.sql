-- Per-run figures, from the recordings this run answers for (last_run_id). A version of a key
-- superseded in the run (restored to an older version, or found to be the transcribed call's own
-- bytes: recording_same_call_take.sql) is not a call of its own, and the audio and segments are
-- those of the calls this run loaded (loaded_run_id): a done call it took over kept another run's.
SELECT
    count(*) FILTER (WHERE status <> 'superseded')      AS recordings_found,
    count(*) FILTER (WHERE status = 'done')             AS recordings_done,
    count(*) FILTER (WHERE status = 'failed')           AS recordings_failed,
    count(*) FILTER (WHERE status = 'quarantined')      AS recordings_quarantined,
    count(*) FILTER (WHERE status = 'duplicate')        AS recordings_duplicate,
    count(*) FILTER (WHERE status IN ('pending', 'chunked')) AS recordings_unfinished,
    COALESCE(sum(duration_s) FILTER (WHERE status = 'done' AND loaded_run_id = :run_id), 0) AS audio_s,
    (SELECT count(*) FROM segments s JOIN recordings r2 ON r2.id = s.recording_id
      WHERE r2.last_run_id = :run_id AND r2.loaded_run_id = :run_id) AS segments,
    (SELECT COALESCE(sum(model_s), 0) FROM batch_metrics b WHERE b.run_id = :run_id) AS model_s,
    (SELECT count(DISTINCT job_id) FROM batch_metrics b WHERE b.run_id = :run_id)    AS jobs
FROM recordings
WHERE last_run_id = :run_id
