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
    confidence   real
) ON COMMIT DROP
