-- Two keys of the day whose current uploads hold the same content and are both transcribed (a key
-- put back to a call that another key got meanwhile; days transcribed before copies were matched):
-- the later one becomes the earlier one's `duplicate` and its transcript leaves search in this
-- transaction, so the call is counted and found once. Not while another live run holds it.
WITH twice AS (
    SELECT d.id,
           (SELECT c.id FROM recordings AS c
            WHERE c.bucket = d.bucket AND c.call_date = d.call_date AND c.etag = d.etag
              AND c.size_bytes = d.size_bytes AND c.object_key <> d.object_key AND c.id < d.id
              AND c.status = 'done'
              AND NOT EXISTS (SELECT 1 FROM recordings AS n
                              WHERE n.bucket = c.bucket AND n.object_key = c.object_key AND n.id > c.id
                                AND n.status <> 'superseded')
            ORDER BY c.id LIMIT 1) AS original
    FROM recordings AS d
    WHERE d.call_date = :call_date AND d.status = 'done' AND d.size_bytes > 0
      AND (d.lease_until IS NULL OR d.lease_until < now() OR d.last_run_id = :run_id)
      AND NOT EXISTS (SELECT 1 FROM recordings AS n
                      WHERE n.bucket = d.bucket AND n.object_key = d.object_key AND n.id > d.id
                        AND n.status <> 'superseded')
), chosen AS (
    SELECT twice.id, twice.original, o.object_key FROM twice JOIN recordings AS o ON o.id = twice.original
), gone_segments AS (
    DELETE FROM segments WHERE recording_id IN (SELECT id FROM chosen)
), gone_transcripts AS (
    DELETE FROM transcripts WHERE recording_id IN (SELECT id FROM chosen)
)
UPDATE recordings AS r
SET status = 'duplicate', duplicate_of = chosen.original, last_run_id = :run_id, updated_at = now(),
    last_error = 'same content as ' || chosen.object_key || ' (recording ' || chosen.original
                 || '): one call, transcribed there; this key''s second transcript was removed'
FROM chosen
WHERE r.id = chosen.id
