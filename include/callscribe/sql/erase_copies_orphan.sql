-- Copies of an erased recording stand on nothing now: they go back to be transcribed as calls
-- of their own by the next run of their day (the erasure names them, for the DPO to erase too
-- when they are the same call), and no reason of theirs names the erased key.
UPDATE recordings
SET status = 'pending', duplicate_of = NULL, last_error = NULL, last_run_id = NULL, lease_until = NULL, attempts = 0,
    updated_at = now()
WHERE duplicate_of = ANY(CAST(:ids AS bigint[])) AND status = 'duplicate'
