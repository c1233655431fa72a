-- Finish the load of the recordings in :ids, in the caller's transaction, after load_clear.sql and
-- the COPY of their new segments (with the redacted texts, the next segment's text for phrases that
-- run on, and the recording's day and agent, so search filters without a join).

-- Per-call metrics, read by analytics.calls (load_clear.sql's deletion of the old segments
-- deleted the old metrics): staged by the loader, which computes them from the shard (loading.call_metrics).
INSERT INTO call_metrics (recording_id, talk_time_s, talk_sum_s, talk_union_s, overlap_s, longest_monologue_s,
                          longest_monologue_speaker, segments)
SELECT recording_id, talk_time_s, talk_sum_s, talk_union_s, overlap_s, longest_monologue_s,
       longest_monologue_speaker, segments
FROM stage_metrics
WHERE recording_id = ANY(:ids);

-- A transcript row for every channel, also one without a word (staged rows only for those with).
INSERT INTO transcripts (recording_id, channel, speaker, text, text_redacted, n_segments, engine)
SELECT r.id, ch.channel,
       COALESCE(t.speaker, CASE WHEN r.channels = 1 THEN 'mixed' ELSE 'channel' || ch.channel END),
       COALESCE(t.text, ''), COALESCE(t.text_redacted, ''), COALESCE(t.n_segments, 0), :engine
FROM recordings AS r
CROSS JOIN LATERAL generate_series(0, GREATEST(COALESCE(r.channels, 1), 1) - 1) AS ch(channel)
LEFT JOIN stage_transcripts AS t ON t.recording_id = r.id AND t.channel = ch.channel
WHERE r.id = ANY(:ids);

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
