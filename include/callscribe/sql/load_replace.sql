-- Finish the load of the recordings in :ids, in the caller's transaction, after load_clear.sql and
-- the COPY of their new segments (with the redacted texts, the next segment's first words for
-- phrases that run on, and the recording's day and agent, so search filters without a join),
-- transcripts (a row per channel) and call metrics (loading.call_metrics; load_clear.sql's deletion
-- of the old segments deleted the old ones).

UPDATE recordings
SET status = 'done', last_error = NULL, transcribed_at = now(), updated_at = now(),
    loads = loads + 1, lease_until = NULL, loaded_run_id = :run_id
WHERE id = ANY(:ids);

-- An object uploaded again with new content is a new version: the older versions'
-- transcripts go in the same transaction, so analysts never see both, nor neither.
WITH older AS (
    SELECT o.id FROM recordings AS o
    JOIN recordings AS n ON n.bucket = o.bucket AND n.object_key = o.object_key
    WHERE n.id = ANY(:ids) AND o.id < n.id
), gone_segments AS (
    DELETE FROM segments WHERE recording_id IN (SELECT id FROM older)
), gone_transcripts AS (
    DELETE FROM transcripts WHERE recording_id IN (SELECT id FROM older)
)
UPDATE recordings
SET status = 'superseded', last_error = 'replaced by a newer upload of the same key', updated_at = now()
WHERE id IN (SELECT id FROM older);
