-- Recordings the worker could not transcribe: failed with its reason (the attempt was
-- counted when the run began on them). Fenced ids only (load_fence.sql). One already
-- `done` (a reprocess run) keeps its transcript, and says that this run could not redo it.
UPDATE recordings
SET status = CASE WHEN status = 'done' THEN 'done' ELSE 'failed' END,
    last_error = CASE WHEN status = 'done' THEN 'kept the earlier transcript; this run failed: ' || :reason
                      ELSE :reason END,
    updated_at = now()
WHERE id = :id AND status IN ('pending', 'chunked', 'failed', 'done')
