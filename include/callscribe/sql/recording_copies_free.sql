-- The chunker could not read a recording (its key denied or archived, gone, or changed since
-- discovery): its copies hold the call's bytes and may well be readable. They go back to work at
-- once, taken by the run that owns the recording (:run_id, with a lease) so the same chunk task
-- transcribes the call from one of them, instead of standing on an original that may never be read
-- (nor tried again: a day no later run looks back to). Under the copies lock; not a copy another
-- live run holds. Only when the recording ended `failed` by this run: one still `done` (a reprocess,
-- a re-run task) keeps its transcript (recording_error.sql), and its copies stand on it.
UPDATE recordings
SET status = 'pending', duplicate_of = NULL, last_error = NULL, attempts = 0, updated_at = now(),
    last_run_id = :run_id,
    lease_until = CASE WHEN CAST(:run_id AS text) IS NULL THEN NULL
                       ELSE now() + make_interval(secs => :lease_s) END
WHERE duplicate_of = :id AND status = 'duplicate'
  AND (lease_until IS NULL OR lease_until < now() OR last_run_id = :run_id)
  AND EXISTS (SELECT 1 FROM recordings AS o
              WHERE o.id = :id AND o.status = 'failed'
                AND (CAST(:run_id AS text) IS NULL OR o.last_run_id = :run_id))
RETURNING id
