UPDATE recordings
SET status = 'chunked', attempts = attempts + 1, last_error = NULL, duration_s = :duration_s,
    channels = :channels, sample_rate = :sample_rate, codec = :codec, agent_id = :agent_id,
    metadata = CAST(:metadata AS jsonb), updated_at = now()
WHERE id = :id
