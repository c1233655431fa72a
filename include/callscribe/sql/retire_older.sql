-- The older versions of the keys in :ids (retire_find.sql; their loads serialised by
-- load_lock_keys.sql) leave search: the bucket no longer holds their content, as if it had been
-- deleted, and the version that does hold the key will never have a transcript to replace them.
-- Checked again under the key locks: a newer upload since, or a version done since, keeps them.
WITH older AS (
    SELECT o.id, n.status AS why FROM recordings AS o
    JOIN recordings AS n ON n.bucket = o.bucket AND n.object_key = o.object_key
    WHERE n.id = ANY(:ids) AND o.id < n.id AND o.status = 'done'
      AND (n.status IN ('quarantined', 'duplicate') OR (n.status = 'failed' AND n.attempts >= :max_attempts))
      AND NOT EXISTS (SELECT 1 FROM recordings AS m
                      WHERE m.bucket = n.bucket AND m.object_key = n.object_key AND m.id > n.id
                        AND m.status <> 'superseded')
    FOR UPDATE OF o
), gone_segments AS (
    DELETE FROM segments WHERE recording_id IN (SELECT id FROM older)
), gone_transcripts AS (
    DELETE FROM transcripts WHERE recording_id IN (SELECT id FROM older)
)
UPDATE recordings AS r
SET status = 'superseded',
    last_error = 'replaced by a newer upload of the same key, which could not be transcribed (' || older.why || ')',
    lease_until = NULL, updated_at = now()
FROM older
WHERE r.id = older.id
