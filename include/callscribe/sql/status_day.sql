-- One row per recording of a day (latest version of each object first), with its reason
-- when not done and what the decoder warned about (a truncated or damaged file).
SELECT r.object_key, r.status, r.last_error, r.metadata ->> 'decode_warning' AS warning, r.duration_s,
       r.channels, r.attempts,
       (SELECT count(*) FROM segments s WHERE s.recording_id = r.id) AS segments
FROM recordings AS r
WHERE r.call_date = :call_date
ORDER BY r.object_key, r.discovered_at DESC
