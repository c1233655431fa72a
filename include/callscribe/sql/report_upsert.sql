INSERT INTO pipeline_runs (run_id, dag_id, call_date, engine, recordings_found, recordings_done,
                           recordings_failed, recordings_quarantined, recordings_unfinished, audio_s, segments, jobs,
                           model_s, recordings_duplicate)
VALUES (:run_id, :dag_id, :call_date, :engine, :recordings_found, :recordings_done,
        :recordings_failed, :recordings_quarantined, :recordings_unfinished, :audio_s, :segments, :jobs, :model_s,
        :recordings_duplicate)
ON CONFLICT (run_id) DO UPDATE
SET recordings_found = EXCLUDED.recordings_found, recordings_done = EXCLUDED.recordings_done,
    recordings_failed = EXCLUDED.recordings_failed, recordings_quarantined = EXCLUDED.recordings_quarantined,
    recordings_unfinished = EXCLUDED.recordings_unfinished, recordings_duplicate = EXCLUDED.recordings_duplicate,
    audio_s = EXCLUDED.audio_s, segments = EXCLUDED.segments, jobs = EXCLUDED.jobs,
    model_s = EXCLUDED.model_s, engine = EXCLUDED.engine, reported_at = now()
