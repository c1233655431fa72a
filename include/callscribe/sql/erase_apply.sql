-- Erase the versions :ids of one object: remembered by key hash with every recording id
-- erased under it (discovery skips the key; a re-run finishes the clean-up), the access
-- log's entries about them gone (earlier erasures' records stay), the rows gone (transcripts
-- and segments with them, by cascade), and the erasure itself logged, by key hash.
WITH remembered AS (
    INSERT INTO erasures (bucket, key_sha256, call_date, recording_ids)
    VALUES (:bucket, :hash, CAST(:call_date AS date), CAST(:all_ids AS bigint[]))
    ON CONFLICT (bucket, key_sha256) DO UPDATE
        SET recording_ids = EXCLUDED.recording_ids,
            call_date = COALESCE(erasures.call_date, EXCLUDED.call_date), erased_at = now()
), forgotten AS (
    DELETE FROM access_log
    WHERE (recording_id = ANY(CAST(:all_ids AS bigint[])) OR key_sha256 = :hash) AND action <> 'erase'
), gone AS (
    DELETE FROM recordings WHERE id = ANY(CAST(:ids AS bigint[]))
)
INSERT INTO access_log (actor, action, detail, key_sha256)
VALUES (:actor, 'erase', :detail, :hash)
