-- Finish the load of the recordings in :ids, in the caller's transaction, after load_clear.sql and
-- the COPY of their new segments (with the redacted texts, the next segment's first words for
-- phrases that run on, and the recording's day and agent, so search filters without a join),
-- transcripts (a row per channel) and call metrics (loading.call_metrics; load_clear.sql's deletion
-- of the old segments deleted the old ones).

UPDATE recordings
SET status = 'done', last_error = NULL, transcribed_at = now(), updated_at = now(),
    loads = loads + 1, lease_until = NULL, loaded_run_id = :run_id,
    -- Transcribed from metadata read after the fix that asked for it: nothing more owed.
    redo_since = CASE WHEN redo_since <= metadata_read_at THEN NULL ELSE redo_since END
WHERE id = ANY(:ids)
