-- The store refused the read of a recording's metadata fix (discovery.refresh_metadata): the call
-- keeps its state and what it had, and the fix is read again once the back-off (doubling with each
-- refusal in a row, up to :max_s) is over, or at once when the object changes again. `callscribe
-- status` names the refusal (status_day.sql) until a read succeeds (recording_metadata.sql).
UPDATE recordings
SET metadata_refused = :code, metadata_refused_modified = :modified,
    metadata_refusals = metadata_refusals + 1,
    metadata_retry_at = now() + LEAST(:base_s * power(2, LEAST(metadata_refusals, 30)), :max_s) * interval '1 second',
    updated_at = now()
WHERE id = :id AND etag = :etag AND status NOT IN ('superseded', 'deleted')
RETURNING metadata_refusals, metadata_retry_at
