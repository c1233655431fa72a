-- A fix of a recording's upload metadata (discovery.refresh_metadata), for the content it was
-- read from (:etag) and newer than what the row answers for (:checked: when the read began, at the
-- earliest; a refusal recorded before it is over). Analysts see the call's agent on its
-- segments too, so they move with it (as at chunking). A fix that changes what the transcript
-- says (:redo: who speaks first on a mono call) owes a new one: a transcribed call is taken again,
-- with its attempts anew, and keeps the old transcript until then; one chunked before the fix, its
-- load still to come, owes it after that load (load_replace.sql).
WITH fixed AS (
    UPDATE recordings
    SET metadata = CAST(:metadata AS jsonb), agent_id = :agent_id, object_modified = :modified,
        redo_since = CASE WHEN CAST(:redo AS boolean) THEN clock_timestamp() ELSE redo_since END,
        -- Attempts anew for the transcript owed, a chunked call's too: its attempt under way may be
        -- its last, and its load, named from the old metadata, would leave the fix owed for good.
        attempts = CASE WHEN CAST(:redo AS boolean) AND status IN ('done', 'chunked') THEN 0 ELSE attempts END,
        metadata_checked_at = CAST(:checked AS timestamptz),
        metadata_refused = NULL, metadata_refused_modified = NULL, metadata_refusals = 0, metadata_retry_at = NULL,
        updated_at = now()
    WHERE id = :id AND etag = :etag AND status NOT IN ('superseded', 'deleted')
      AND (object_modified < :modified
           -- The same LastModified read again (a fix may share its second): only by a read that
           -- began after the one the row holds.
           OR (object_modified = :modified
               AND GREATEST(metadata_read_at, metadata_checked_at) < CAST(:checked AS timestamptz)))
    RETURNING id, call_date, status, agent_id
)
UPDATE segments AS s
SET agent_id = fixed.agent_id
FROM fixed
WHERE fixed.status = 'done' AND s.recording_id = fixed.id AND s.call_date = fixed.call_date
  AND s.agent_id IS DISTINCT FROM fixed.agent_id
