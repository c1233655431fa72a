-- Runs other than this one that hold live leases on a day's recordings.
SELECT DISTINCT last_run_id FROM recordings
WHERE call_date = :call_date AND lease_until >= now() AND last_run_id <> :run_id
