-- The old transcripts of the recordings in :ids (fenced and locked by load_fence.sql), and those of
-- their older versions, in the load's transaction: readers see them until the new ones commit.
-- Their call metrics and words go with the segments (triggers). Every deletion of the load comes
-- here, before it adds words: pruning words takes the lexicon lock exclusive, adding them shared,
-- and a load holding the shared lock while it waited for the exclusive one deadlocked with
-- another load doing the same.
DELETE FROM segments WHERE recording_id = ANY(:ids);

DELETE FROM transcripts WHERE recording_id = ANY(:ids);

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
SET status = 'superseded', last_error = 'replaced by a newer upload of the same key', updated_at = now(),
    duplicate_of = NULL
WHERE id IN (SELECT id FROM older);
