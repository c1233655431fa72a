-- Replace the transcripts of the recordings in :ids with the staged segments, in the
-- caller's transaction: readers see the old transcript until the commit. :ids are the
-- fenced ids of load_fence.sql, locked by it.
DELETE FROM segments WHERE recording_id = ANY(:ids);

-- next_redacted (staged by the loader, the channel's next segment) lets search find a phrase that
-- runs on into the speaker's next segment. The recording's day and agent go on every segment, so
-- search filters on them without a join.
INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, word_starts, text_redacted,
                      next_redacted, confidence, call_date, agent_id)
SELECT s.recording_id, s.channel, s.seq, s.speaker, s.start_s, s.end_s, s.text, s.word_starts, s.text_redacted,
       s.next_redacted, s.confidence, r.call_date, r.agent_id
FROM stage_segments AS s
JOIN recordings AS r ON r.id = s.recording_id
WHERE s.recording_id = ANY(:ids);

-- Per-call metrics, read by analytics.calls (deleting the old segments above deleted the old
-- metrics): staged by the loader, which computes them from the shard (loading.call_metrics).
INSERT INTO call_metrics (recording_id, talk_time_s, talk_sum_s, talk_union_s, overlap_s, longest_monologue_s,
                          longest_monologue_speaker, segments)
SELECT recording_id, talk_time_s, talk_sum_s, talk_union_s, overlap_s, longest_monologue_s,
       longest_monologue_speaker, segments
FROM stage_metrics
WHERE recording_id = ANY(:ids);

DELETE FROM transcripts WHERE recording_id = ANY(:ids);

INSERT INTO transcripts (recording_id, channel, speaker, text, text_redacted, n_segments, engine)
SELECT r.id, ch.channel,
       -- A diarized mono channel holds several speakers (its segments say who): 'mixed'.
       CASE WHEN count(DISTINCT s.speaker) > 1 THEN 'mixed'
            ELSE COALESCE(max(s.speaker), CASE WHEN r.channels = 1 THEN 'mixed' ELSE 'channel' || ch.channel END) END,
       COALESCE(string_agg(s.text, ' ' ORDER BY s.seq), ''),
       COALESCE(string_agg(s.text_redacted, ' ' ORDER BY s.seq), ''),
       count(s.seq),
       :engine
FROM recordings AS r
CROSS JOIN LATERAL generate_series(0, GREATEST(COALESCE(r.channels, 1), 1) - 1) AS ch(channel)
LEFT JOIN stage_segments AS s ON s.recording_id = r.id AND s.channel = ch.channel
WHERE r.id = ANY(:ids)
GROUP BY r.id, ch.channel, r.channels;

UPDATE recordings
SET status = 'done', last_error = NULL, transcribed_at = now(), updated_at = now(),
    loads = loads + 1, lease_until = NULL, loaded_run_id = :run_id
WHERE id = ANY(:ids);

-- An object uploaded again with new content is a new version: the older versions'
-- transcripts go in the same transaction, so analysts never see both, nor neither.
WITH older AS (
    SELECT o.id FROM recordings AS o
    JOIN recordings AS n ON n.bucket = o.bucket AND n.object_key = o.object_key
    WHERE n.id = ANY(:ids) AND o.id < n.id
), gone_segments AS (
    DELETE FROM segments WHERE recording_id IN (SELECT id FROM older)
), gone_transcripts AS (
    DELETE FROM transcripts WHERE recording_id IN (SELECT id FROM older)
)
UPDATE recordings
SET status = 'superseded', last_error = 'replaced by a newer upload of the same key', updated_at = now()
WHERE id IN (SELECT id FROM older);
