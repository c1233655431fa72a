-- Two keys whose current uploads hold the same content (etag and size, or bytes read by the
-- chunker: recording_bytes.sql), on the day or within :window days of it, and are both transcribed (a key put back to a call that another key got meanwhile; days
-- transcribed before copies were matched): the later one becomes the earlier one's `duplicate`
-- and its transcript leaves search in this transaction, so the call is counted and found once.
-- The later one may be on another day: a discovery of either day settles the pair. Not while
-- another live run holds it.
WITH mine AS (
    SELECT d.id, d.bucket, d.object_key, d.etag, d.size_bytes, d.call_date, d.content_sha256
    FROM recordings AS d
    WHERE d.call_date = :call_date AND d.status = 'done' AND d.size_bytes > 0
      AND NOT EXISTS (SELECT 1 FROM recordings AS n
                      WHERE n.bucket = d.bucket AND n.object_key = d.object_key AND n.id > d.id
                        AND n.status <> 'superseded')
), pairs AS (  -- each with the oldest other transcribed key of its content, by etag or by bytes
    SELECT m.id AS mine,
           LEAST((SELECT c.id FROM recordings AS c
                  WHERE c.bucket = m.bucket AND c.etag = m.etag AND c.size_bytes = m.size_bytes
                    AND c.object_key <> m.object_key AND c.status = 'done'
                    AND c.call_date BETWEEN m.call_date - CAST(:window AS integer)
                                        AND m.call_date + CAST(:window AS integer)
                    AND NOT EXISTS (SELECT 1 FROM recordings AS n
                                    WHERE n.bucket = c.bucket AND n.object_key = c.object_key AND n.id > c.id
                                      AND n.status <> 'superseded')
                  ORDER BY c.id LIMIT 1),
                 (SELECT c.id FROM recordings AS c  -- apart from the etag's: each through its own index
                  WHERE m.content_sha256 IS NOT NULL AND c.content_sha256 = m.content_sha256
                    AND c.bucket = m.bucket AND c.object_key <> m.object_key AND c.status = 'done'
                    AND c.call_date BETWEEN m.call_date - CAST(:window AS integer)
                                        AND m.call_date + CAST(:window AS integer)
                    AND NOT EXISTS (SELECT 1 FROM recordings AS n
                                    WHERE n.bucket = c.bucket AND n.object_key = c.object_key AND n.id > c.id
                                      AND n.status <> 'superseded')
                  ORDER BY c.id LIMIT 1)) AS other
    FROM mine AS m
), chosen AS (
    SELECT DISTINCT ON (GREATEST(mine, other)) GREATEST(mine, other) AS id, LEAST(mine, other) AS original
    FROM pairs
    WHERE other IS NOT NULL
    ORDER BY GREATEST(mine, other), LEAST(mine, other)
), retired AS (
    SELECT chosen.id, chosen.original, o.object_key, o.call_date
    FROM chosen
    JOIN recordings AS r ON r.id = chosen.id
    JOIN recordings AS o ON o.id = chosen.original
    WHERE r.lease_until IS NULL OR r.lease_until < now() OR r.last_run_id = :run_id
), gone_segments AS (
    DELETE FROM segments WHERE recording_id IN (SELECT id FROM retired)
), gone_transcripts AS (
    DELETE FROM transcripts WHERE recording_id IN (SELECT id FROM retired)
)
UPDATE recordings AS r
SET status = 'duplicate', duplicate_of = retired.original, last_run_id = :run_id, updated_at = now(),
    last_error = callscribe_copy_reason(retired.object_key, retired.call_date, retired.original, true)
                 || '; this key''s second transcript was removed'
FROM retired
WHERE r.id = retired.id
