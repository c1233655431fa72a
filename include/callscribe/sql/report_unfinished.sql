-- What the run claimed and leaves unfinished (a chunk or transcribe task that failed for
-- good): each says why, and a recording out of attempts becomes `failed` for good (until a
-- reprocess run) instead of staying claimable for ever.
UPDATE recordings
SET status = CASE WHEN attempts >= :max_attempts THEN 'failed' ELSE status END,
    last_error = CASE
        WHEN attempts >= :max_attempts
            THEN format('gave up after %s attempts: %s', attempts, COALESCE(last_error, 'not finished'))
        ELSE COALESCE(last_error, format('not finished by run %s; the next run tries again', :run_id))
    END,
    updated_at = now()
WHERE last_run_id = :run_id AND status IN ('pending', 'chunked')
