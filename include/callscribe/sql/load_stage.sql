-- Per-call metrics, computed by the loader from the staged rows (loading.call_metrics).
CREATE TEMP TABLE stage_metrics (
    recording_id        bigint NOT NULL,
    talk_time_s         jsonb NOT NULL,
    talk_sum_s          numeric NOT NULL,
    talk_union_s        numeric NOT NULL,
    overlap_s           numeric NOT NULL,
    longest_monologue_s numeric NOT NULL,
    longest_monologue_speaker text,
    segments            integer NOT NULL
) ON COMMIT DROP
;

-- Per channel with segments: its transcript, joined by the loader as it wrote the segments.
CREATE TEMP TABLE stage_transcripts (
    recording_id  bigint NOT NULL,
    channel       smallint NOT NULL,
    speaker       text NOT NULL,
    text          text NOT NULL,
    text_redacted text NOT NULL,
    n_segments    integer NOT NULL
) ON COMMIT DROP
