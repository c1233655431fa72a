-- A day's transcripts as `make demo` prints them: the text analysts see (numbers masked, as in
-- analytics.transcripts), and the speakers told apart on each channel (a mono call's diarized ones).
SELECT r.object_key, t.channel, t.n_segments,
       COALESCE(t.text_redacted, callscribe_redact(t.text)) AS text,
       (SELECT string_agg(DISTINCT s.speaker, ', ') FROM segments AS s
        WHERE s.recording_id = t.recording_id AND s.channel = t.channel) AS speakers
FROM transcripts AS t
JOIN recordings AS r ON r.id = t.recording_id
WHERE r.call_date = :call_date
ORDER BY r.object_key, t.channel
