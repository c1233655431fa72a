-- A recording was decoded and chunked (its attempt was counted when the run began on it).
-- One already `done` stays `done` (a re-run task or a reprocess run): its transcript stays
-- visible until a load replaces it.
-- The run must still own it: a cleared task of an older run changes nothing.
UPDATE recordings
SET status = CASE WHEN status = 'done' THEN 'done' ELSE 'chunked' END,
    last_error = NULL, duration_s = :duration_s,
    channels = :channels, sample_rate = :sample_rate, codec = :codec, agent_id = :agent_id,
    metadata = CAST(:metadata AS jsonb), updated_at = now(), chunking_since = NULL
WHERE id = :id AND status NOT IN ('superseded', 'quarantined', 'deleted', 'duplicate')
  AND (CAST(:run_id AS text) IS NULL OR last_run_id = :run_id)
