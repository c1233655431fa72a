-- Calls of a date range (or the one key, or the one recording) with their segments as analysts
-- see them (redacted), in time order: what `callscribe export` and the search page's download
-- write out. One key may hold a call in two buckets: each recording is a call of its own.
SELECT c.recording_id, c.bucket, c.object_key, c.call_date, c.agent_id, c.duration_s,
       s.channel, s.speaker, s.start_s, s.end_s, s.text
FROM analytics.recordings AS c
LEFT JOIN analytics.segments AS s ON s.recording_id = c.recording_id
WHERE c.status = 'done'
  AND CASE WHEN CAST(:key AS text) IS NULL THEN c.call_date BETWEEN CAST(:first AS date) AND CAST(:last AS date)
           ELSE c.object_key = CAST(:key AS text) END
  AND (CAST(:rid AS bigint) IS NULL OR c.recording_id = CAST(:rid AS bigint))
ORDER BY c.call_date, c.object_key, c.recording_id, s.start_s, s.channel, s.seq
