-- One row per recording of a day (latest version of each object first), with its reason
-- when not done and what the decoder warned about (a truncated or damaged file), or that its
-- metadata fix could not be read.
SELECT r.object_key, r.status, r.last_error,
       -- A metadata fix the store refuses to let discovery read (recording_metadata_refused.sql).
       NULLIF(concat_ws('; ', r.metadata ->> 'decode_warning',
                        CASE WHEN r.metadata_refused IS NOT NULL THEN
                            'its metadata fix is unread: the store refused the read ' || r.metadata_refusals
                            || ' time(s) (' || r.metadata_refused || '); read again after '
                            || to_char(r.metadata_retry_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')
                            || ' or when the object changes' END), '') AS warning, r.duration_s,
       r.channels, r.attempts,
       (SELECT count(*) FROM segments s WHERE s.recording_id = r.id) AS segments
FROM recordings AS r
WHERE r.call_date = :call_date
ORDER BY r.object_key, r.discovered_at DESC
