-- The call days of what a run took or settled (recordings_run_idx): its own days, and the days
-- of copies it freed and claimed outside them.
SELECT DISTINCT call_date FROM recordings
WHERE last_run_id = :run_id AND call_date IS NOT NULL
ORDER BY call_date DESC
