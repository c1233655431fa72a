-- A day's row whose content (etag and size) another key holds, on its day or within :window days
-- of it, is the same call uploaded twice: `duplicate` of that recording, never claimed, and this
-- run's to report.
-- Marked: a row no run has taken (pending, never attempted: new, or back in use after a
-- deletion or a copy's revival), and one that failed for good while another key of the call is
-- transcribed or on its way (a reprocess would transcribe the call twice). The original is the current
-- version of its key and on its way to a transcript: one done first, else one a run has taken
-- (attempted, or leased by another run), else, on the same day, the oldest untaken one, so two
-- untaken copies never mark each other; but first an untaken upload of a key with a transcribed
-- version: most likely that call again (a metadata fix that changed the etag), which its key's
-- transcript then takes over without a second transcription (recording_same_call_take.sql). On another day an original must be done or held by a
-- run now (this one's lease counts): anything else waits for a run of its own day, which may
-- never come, and the copy would stand on nothing. A row that failed with attempts left (or
-- a run died on) is a copy too once another key of the call is transcribed or held by a run
-- now: its retry would transcribe the call twice (of two such rows of one day in this run,
-- the later one). A quarantined row is no original: a copy under an audio name is looked at on
-- its own. Not a row another run holds now.
UPDATE recordings AS d
SET status = 'duplicate', duplicate_of = o.id, last_run_id = :run_id, updated_at = now(),
    last_error = callscribe_copy_reason(o.object_key, o.call_date, o.id, true)
FROM recordings AS o
WHERE d.call_date = :call_date AND d.size_bytes > 0
  AND ((d.status = 'pending' AND d.attempts = 0) OR (d.status = 'failed' AND d.attempts >= :max_attempts)
       OR (d.status IN ('pending', 'failed') AND d.attempts BETWEEN 1 AND :max_attempts - 1))
  AND (d.lease_until IS NULL OR d.lease_until < now() OR d.last_run_id = :run_id)
  AND o.id = (
      SELECT c.id
      FROM recordings AS c
      -- Whether the key of the candidate (ck) and of the copy (dk) has a transcribed version.
      CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM recordings AS p
                                         WHERE p.bucket = c.bucket AND p.object_key = c.object_key
                                           AND p.id < c.id AND p.status = 'done') AS key_done) AS ck
      CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM recordings AS p
                                         WHERE p.bucket = d.bucket AND p.object_key = d.object_key
                                           AND p.id < d.id AND p.status = 'done') AS key_done) AS dk
      WHERE c.bucket = d.bucket AND c.etag = d.etag AND c.size_bytes = d.size_bytes
        AND c.object_key <> d.object_key
        AND c.call_date BETWEEN d.call_date - CAST(:window AS integer) AND d.call_date + CAST(:window AS integer)
        AND (c.status = 'done'
             OR (d.attempts BETWEEN 1 AND :max_attempts - 1
                 AND c.lease_until > now() AND c.status IN ('pending', 'chunked', 'failed')
                 AND c.attempts < :max_attempts
                 AND (c.last_run_id IS DISTINCT FROM :run_id OR c.call_date <> d.call_date OR c.id < d.id))
             OR (d.attempts NOT BETWEEN 1 AND :max_attempts - 1 AND c.call_date <> d.call_date
                 AND c.lease_until > now()
                 AND c.status IN ('pending', 'chunked', 'failed') AND c.attempts < :max_attempts)
             OR (c.call_date = d.call_date AND d.status = 'failed' AND d.attempts >= :max_attempts
                 AND (c.status IN ('pending', 'chunked') OR (c.status = 'failed' AND c.attempts < :max_attempts)))
             OR (c.call_date = d.call_date AND d.status = 'pending' AND d.attempts = 0
                 AND (c.status = 'chunked'
                      OR (c.status = 'failed' AND c.attempts < :max_attempts)
                      OR (c.status = 'pending'
                          AND (c.attempts > 0
                               OR (NOT ck.key_done, c.id) < (NOT dk.key_done, d.id)
                               OR (c.lease_until > now() AND c.last_run_id IS DISTINCT FROM :run_id))))))
        AND NOT EXISTS (SELECT 1 FROM recordings AS n
                        WHERE n.bucket = c.bucket AND n.object_key = c.object_key AND n.id > c.id
                          AND n.status <> 'superseded')
      ORDER BY c.status = 'done' DESC, c.attempts > 0 DESC, ck.key_done DESC, c.id
      LIMIT 1
  )
