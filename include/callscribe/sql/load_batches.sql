INSERT INTO batch_metrics (run_id, job_id, shard_uri, batch_index, n_chunks, audio_s, padded_audio_s, model_s,
                           wall_s, device, peak_mem_bytes, oom_splits, engine)
VALUES (:run_id, :job_id, :shard_uri, :batch_index, :n_chunks, :audio_s, :padded_audio_s, :model_s,
        :wall_s, :device, :peak_mem_bytes, :oom_splits, :engine)
ON CONFLICT ON CONSTRAINT batch_metrics_position DO UPDATE
SET n_chunks = EXCLUDED.n_chunks, audio_s = EXCLUDED.audio_s, padded_audio_s = EXCLUDED.padded_audio_s,
    model_s = EXCLUDED.model_s, wall_s = EXCLUDED.wall_s, device = EXCLUDED.device,
    peak_mem_bytes = EXCLUDED.peak_mem_bytes, oom_splits = EXCLUDED.oom_splits
