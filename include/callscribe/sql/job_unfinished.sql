-- A job ended without a shard (its worker failed, was killed or timed out): its recordings
-- keep their state, so the task's retry or the next run takes them again, and say why.
UPDATE recordings
SET last_error = :reason, updated_at = now()
WHERE id = ANY(:ids) AND last_run_id = :run_id AND status IN ('pending', 'chunked', 'failed')
