-- A recording was decoded and chunked (its attempt was counted when the run began on it).
-- One already `done` stays `done` (a re-run task or a reprocess run): its transcript stays
-- visible until a load replaces it. What the upload says of the call now (its agent) is the
-- call's at once, so its searchable segments, which carry the agent, move with it: a load
-- that never comes (a red reprocess) must not leave the call under one agent and its lines
-- under another.
-- The run must still own it: a cleared task of an older run changes nothing.
WITH chunked AS (
    UPDATE recordings
    SET status = CASE WHEN status = 'done' THEN 'done' ELSE 'chunked' END,
        last_error = NULL, duration_s = :duration_s,
        channels = :channels, sample_rate = :sample_rate, codec = :codec, agent_id = :agent_id,
        metadata = CAST(:metadata AS jsonb), updated_at = now(), chunking_since = NULL,
        -- The attempt's mark, taken before the metadata was read: a fix after it is still owed.
        metadata_read_at = COALESCE(chunking_since, now()),
        -- What the row answered for when the chunker began (:seen_modified): a fix another run's
        -- discovery applied since (recording_metadata.sql) is overwritten above by what the
        -- chunker read before it, so the next discovery reads that fix again.
        object_modified = CAST(:seen_modified AS timestamptz)
    WHERE id = :id AND status NOT IN ('superseded', 'quarantined', 'deleted', 'duplicate')
      AND (CAST(:run_id AS text) IS NULL OR last_run_id = :run_id)
    RETURNING id, call_date, status, agent_id
)
UPDATE segments AS s
SET agent_id = chunked.agent_id
FROM chunked
WHERE chunked.status = 'done' AND s.recording_id = chunked.id AND s.call_date = chunked.call_date
  AND s.agent_id IS DISTINCT FROM chunked.agent_id
