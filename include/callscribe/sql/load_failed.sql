-- Recordings the worker could not transcribe: failed with its reason (the attempt was
-- counted when the run chunked them). Fenced ids only (load_fence.sql).
UPDATE recordings
SET status = 'failed', last_error = :reason, updated_at = now()
WHERE id = :id AND status IN ('pending', 'chunked', 'failed')
