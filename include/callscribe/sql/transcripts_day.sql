SELECT r.object_key, t.channel, t.speaker, t.n_segments, t.text
FROM transcripts AS t
JOIN recordings AS r ON r.id = t.recording_id
WHERE r.call_date = :call_date
ORDER BY r.object_key, t.channel
