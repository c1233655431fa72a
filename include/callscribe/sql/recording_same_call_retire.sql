-- The new version of a key whose bytes its transcribed version (:prior_id) holds
-- (recording_same_call.sql) ends here, untranscribed: it hands its etag over to that version
-- (recording_same_call_take.sql, the next statement: the etag is unique per key) and keeps it
-- with its id appended, as discover_reupload.sql does, so no listing matches it again.
-- Superseded: no rule counts it as the key's current upload, nor as a copy or an original.
UPDATE recordings
SET status = 'superseded', etag = etag || '#' || id, content_sha256 = :sha256, duplicate_of = NULL,
    lease_until = NULL, chunking_since = NULL, updated_at = now(),
    last_error = 'the same bytes as recording ' || CAST(:prior_id AS text) || ' of this key (its upload metadata fixed '
                 || 'by a copy that changed the etag): one call, its transcript kept there with the new metadata'
WHERE id = :id AND status IN ('pending', 'chunked', 'failed')
  AND (CAST(:run_id AS text) IS NULL OR last_run_id = :run_id)
RETURNING id
