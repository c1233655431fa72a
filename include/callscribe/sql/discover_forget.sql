-- Objects gone from the bucket leave search in the discovery's transaction: their segments
-- and transcripts go, and the rows stay as `deleted`, the record of what the day had. A run
-- still holding one finds it `deleted` and leaves it (chunk and load skip that state).
WITH gone AS (
    SELECT unnest(CAST(:ids AS bigint[])) AS id
), gone_segments AS (
    DELETE FROM segments WHERE recording_id IN (SELECT id FROM gone)
), gone_transcripts AS (
    DELETE FROM transcripts WHERE recording_id IN (SELECT id FROM gone)
)
UPDATE recordings
SET status = 'deleted', last_error = 'deleted from the bucket (noticed by run ' || :run_id || ')',
    lease_until = NULL, updated_at = now(), duplicate_of = NULL
WHERE id IN (SELECT id FROM gone)
