-- Runs other than this one that may still owe a day's recordings their end: those holding leases,
-- expired ones too (a run over without its report, marked success or failed in the UI or cut off
-- by its timeout, is found a day later, its lease run out), and those whose recordings are
-- unfinished without one (a task of a reported run cleared alone, without its downstream).
SELECT DISTINCT last_run_id FROM recordings
WHERE call_date = :call_date AND last_run_id <> :run_id
  AND (lease_until IS NOT NULL OR status IN ('pending', 'chunked'))
