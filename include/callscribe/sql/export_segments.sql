-- Calls of a date range (or the one key, or the one recording) with their segments as analysts
-- see them (redacted), in time order: what `callscribe export` and the search page's download
-- write out. One key may hold a call in two buckets: each recording is a call of its own.
-- A page of at most :page calls, those after (:after_date, :after_key, :after_id) in this order
-- (none: from the first): a long range is read a page at a time (see exporting.calls_between).
WITH page AS (
    SELECT c.recording_id, c.bucket, c.object_key, c.call_date, c.agent_id, c.duration_s
    FROM analytics.recordings AS c
    WHERE c.status = 'done'
      AND CASE WHEN CAST(:key AS text) IS NULL THEN c.call_date BETWEEN CAST(:first AS date) AND CAST(:last AS date)
               ELSE c.object_key = CAST(:key AS text) END
      AND (CAST(:rid AS bigint) IS NULL OR c.recording_id = CAST(:rid AS bigint))
      AND (CAST(:after_id AS bigint) IS NULL
           OR (c.call_date, c.object_key, c.recording_id)
              > (CAST(:after_date AS date), CAST(:after_key AS text), CAST(:after_id AS bigint)))
    ORDER BY c.call_date, c.object_key, c.recording_id
    LIMIT :page
)
SELECT p.recording_id, p.bucket, p.object_key, p.call_date, p.agent_id, p.duration_s,
       s.channel, s.speaker, s.start_s, s.end_s, s.text
FROM page AS p
LEFT JOIN analytics.segments AS s ON s.recording_id = p.recording_id
ORDER BY p.call_date, p.object_key, p.recording_id, s.start_s, s.channel, s.seq
