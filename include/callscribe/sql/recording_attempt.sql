-- A run starts on a recording: one attempt, counted before anything that could crash (a
-- decoder, the memory of an hours-long file), and once per run however often its task is
-- retried or cleared.
UPDATE recordings
SET attempts = attempts + CASE WHEN attempted_run_id IS NOT DISTINCT FROM CAST(:run_id AS text)
                               AND :run_id IS NOT NULL THEN 0 ELSE 1 END,
    attempted_run_id = :run_id, updated_at = now(),
    -- Until the recording is chunked, failed or quarantined: the chunk task is on it.
    chunking_since = clock_timestamp()
WHERE id = :id
-- The mark, which a refund note names (pipeline._refund).
RETURNING chunking_since
