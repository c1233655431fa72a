-- The day's recordings this run should process: stamps them with the run id and a lease.
-- Recordings leased by another live run are skipped; SKIP LOCKED keeps two runs claiming
-- at the same moment from taking the same rows, and the lease keeps a later run from
-- taking rows an earlier one committed to but has not finished. Each run that takes a
-- recording counts an attempt: one tried :max_attempts times is left alone unless reprocessed.
-- A reprocess claim (and the claim of a call a metadata fix asks to transcribe again) forgets
-- which run's transcript a row holds, so a run that reuses a run id (a cleared run, `callscribe
-- run` again) still loads its new transcript.
UPDATE recordings
SET last_run_id = :run_id, lease_until = now() + make_interval(secs => :lease_s), updated_at = now(),
    loaded_run_id = CASE WHEN CAST(:reprocess AS boolean) OR redo_since IS NOT NULL THEN NULL ELSE loaded_run_id END
WHERE id IN (
    SELECT id FROM recordings
    WHERE bucket = :bucket
      AND call_date = :call_date
      AND starts_with(object_key, :prefix)
      AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))  -- copies freed on a day not the run's
      AND (
          (status IN ('pending', 'chunked', 'failed') AND attempts < :max_attempts)
          OR (CAST(:reprocess AS boolean) AND status IN ('done', 'chunked', 'failed'))
          -- A metadata fix changed what its transcript says (recording_metadata.sql).
          OR (status = 'done' AND redo_since IS NOT NULL AND attempts < :max_attempts)
      )
      AND (lease_until IS NULL OR lease_until < now() OR last_run_id = :run_id)
      -- An older version of a re-uploaded object waits for the new one to replace it (a newer
      -- one superseded by a restore of this content does not count: discover_restored.sql).
      AND NOT EXISTS (SELECT 1 FROM recordings AS n
                      WHERE n.bucket = recordings.bucket AND n.object_key = recordings.object_key
                        AND n.id > recordings.id AND n.status <> 'superseded')
    -- A reprocess with a limit takes the calls loaded fewest times first (new ones, then those the
    -- slices before it did not redo): runs in a row work through the day, not the same first calls.
    ORDER BY CASE WHEN CAST(:reprocess AS boolean) THEN loads END, id
    LIMIT :max_recordings
    FOR UPDATE SKIP LOCKED
)
RETURNING id
