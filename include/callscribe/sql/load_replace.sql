-- Replace the transcripts of the recordings in :ids with the staged segments, in the
-- caller's transaction: readers see the old transcript until the commit. :ids are the
-- fenced ids of load_fence.sql, locked by it.
DELETE FROM segments WHERE recording_id = ANY(:ids);

-- next_redacted lets search find a phrase that runs on into the speaker's next segment.
INSERT INTO segments (recording_id, channel, seq, speaker, start_s, end_s, text, word_starts, text_redacted,
                      next_redacted, confidence)
SELECT recording_id, channel, seq, speaker, start_s, end_s, text, word_starts, text_redacted,
       lead(text_redacted) OVER (PARTITION BY recording_id, channel ORDER BY seq), confidence
FROM stage_segments
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
