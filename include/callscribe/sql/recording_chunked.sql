-- A recording was decoded and chunked. One already `done` stays `done` (a re-run task or a
-- reprocess run): its transcript stays visible until a load replaces it.
UPDATE recordings
SET status = CASE WHEN status = 'done' THEN 'done' ELSE 'chunked' END,
    attempts = attempts + 1, last_error = NULL, duration_s = :duration_s,
    channels = :channels, sample_rate = :sample_rate, codec = :codec, agent_id = :agent_id,
    metadata = CAST(:metadata AS jsonb), updated_at = now()
WHERE id = :id
