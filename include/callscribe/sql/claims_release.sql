-- A run has finished (whatever its outcome): other runs may take what it left undone.
UPDATE recordings SET lease_until = NULL
WHERE last_run_id = :run_id AND lease_until IS NOT NULL
