-- Copies of an erased recording: they stay untranscribed (the same call), and their reason
-- stops naming the erased key, which only its hash may outlive.
UPDATE recordings
SET duplicate_of = NULL, updated_at = now(),
    last_error = 'same content as a recording erased on request: the same call, not transcribed (erase this key too)'
WHERE duplicate_of = ANY(CAST(:ids AS bigint[])) AND status = 'duplicate'
