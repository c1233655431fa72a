-- Full-text search through the analyst function: redacted text, one hit per moment.
-- hit_s: when the hit's first matching word starts (the segment's start where words are not timed).
-- recent_days: the first window exact matches are ranked in (NULL: every match in the range).
SELECT object_key, bucket, call_date, agent_id, channel, speaker, start_s, end_s, snippet, rank, match, hit_s
FROM analytics.search(
    CAST(:query AS text), CAST(:from_date AS date), CAST(:to_date AS date), CAST(:speaker AS text),
    CAST(:agent AS text), CAST(:min_duration_s AS double precision), CAST(:fuzzy AS boolean),
    CAST(:limit AS integer), CAST(:recent_days AS integer))
