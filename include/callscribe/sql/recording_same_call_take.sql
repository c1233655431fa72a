-- The transcribed version of a key takes over the etag of its new upload of the same bytes
-- (recording_same_call_retire.sql gave it up): the key's listing, play links and the audit find
-- the call's row and transcript under what the bucket holds. The run that took the upload answers
-- for it now. What the row answers for of the metadata (object_modified) stays until the fix is
-- given (recording_metadata.sql, in the same transaction; left undone, the next discovery reads it).
UPDATE recordings
SET etag = :etag, size_bytes = :size_bytes, last_run_id = COALESCE(CAST(:run_id AS text), last_run_id),
    updated_at = now()
WHERE id = :prior_id AND status = 'done'
RETURNING id
