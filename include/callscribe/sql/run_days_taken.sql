-- The call days, and the base prefix each key was listed under (what comes before its date
-- folder), of what a run took or settled (recordings_run_idx): its own days and prefix, and copies
-- it freed and claimed outside them (on another day, under another prefix).
SELECT DISTINCT call_date,
       CASE WHEN strpos(object_key, to_char(call_date, 'YYYY/MM/DD/')) > 0
            THEN left(object_key, strpos(object_key, to_char(call_date, 'YYYY/MM/DD/')) - 1)
            ELSE '' END AS base_prefix
FROM recordings
WHERE last_run_id = :run_id AND call_date IS NOT NULL
ORDER BY call_date DESC, base_prefix
