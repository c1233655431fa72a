-- The segments of the calls of a date range that are `done`, with their raw and redacted text and
-- confidence, a channel of a call at a time in order: what `callscribe dataset` cuts examples from.
-- Base tables, not the analysts' views: a training set needs the words as spoken (segments that
-- held a masked number are left out by the caller, not shown masked).
SELECT r.id AS recording_id, r.bucket, r.object_key, r.etag, r.call_date, s.channel, s.seq, s.speaker,
       s.start_s, s.end_s, s.text, s.text_redacted, s.confidence
FROM recordings AS r
JOIN segments AS s ON s.recording_id = r.id
WHERE r.status = 'done'
  AND r.call_date BETWEEN CAST(:first AS date) AND CAST(:last AS date)
ORDER BY r.call_date, r.object_key, r.id, s.channel, s.seq
