CREATE TEMP TABLE stage_segments (
    recording_id bigint NOT NULL,
    channel      smallint NOT NULL,
    seq          integer NOT NULL,
    speaker      text NOT NULL,
    start_s      real NOT NULL,
    end_s        real NOT NULL,
    text         text NOT NULL,
    word_starts  real[],
    text_redacted text NOT NULL,
    next_redacted text,
    confidence   real
) ON COMMIT DROP;

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
