-- Every registered version of a day's objects, with what an audit checks of each.
SELECT r.id, r.object_key, r.etag, r.size_bytes, r.status, r.last_error, r.channels, r.loads, r.lease_until, r.last_run_id,
       r.attempts,
       COALESCE(r.lease_until > now(), false)                          AS leased,
       (SELECT o.status FROM recordings o WHERE o.id = r.duplicate_of)  AS original_status,
       (SELECT o.attempts FROM recordings o WHERE o.id = r.duplicate_of) AS original_attempts,
       (SELECT count(*) FROM transcripts t WHERE t.recording_id = r.id) AS transcripts,
       (SELECT count(*) - count(DISTINCT (s.channel, s.start_s, s.end_s))
          FROM segments s WHERE s.recording_id = r.id)                  AS repeated_segments
FROM recordings AS r
WHERE r.bucket = :bucket AND r.call_date = :call_date AND starts_with(r.object_key, :prefix)
ORDER BY r.object_key, r.id
