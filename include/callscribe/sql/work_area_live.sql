-- What the work area sweep must keep: the runs that hold live leases, and the recordings
-- they hold (their speech packs are still to be transcribed).
SELECT last_run_id, id, call_date FROM recordings
WHERE lease_until > now() AND last_run_id IS NOT NULL
