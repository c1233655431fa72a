-- A job ended without a shard (its worker failed, was killed or timed out): its recordings
-- keep their state, so the task's retry or the next run takes them again, and say why. Where the
-- deployment was at fault, not the recordings (:deployment: a worker image too old for the job, a
-- pod that never ran), the attempt this run counted is given back, once (the task's retry finds
-- attempted_run_id cleared): a `done` call's too (a transcript a metadata fix owes again, claimed
-- only under max_attempts), which keeps its transcript and its reason as they are.
UPDATE recordings
SET last_error = CASE WHEN status = 'done' THEN last_error ELSE :reason END, updated_at = now(),
    attempts = CASE WHEN :deployment AND attempted_run_id = :run_id THEN GREATEST(attempts - 1, 0)
                    ELSE attempts END,
    attempted_run_id = CASE WHEN :deployment AND attempted_run_id = :run_id THEN NULL ELSE attempted_run_id END
WHERE id = ANY(:ids) AND last_run_id = :run_id
  AND (status IN ('pending', 'chunked', 'failed') OR (status = 'done' AND :deployment))
