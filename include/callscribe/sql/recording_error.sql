UPDATE recordings
SET status = :status, attempts = attempts + 1, last_error = :error, updated_at = now()
WHERE id = :id
