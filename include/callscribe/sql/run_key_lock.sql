-- Taken before run_key_taken.sql, until the listing is noted: two runs of one work area listing at the
-- same moment would otherwise both find the other not yet there.
SELECT pg_advisory_xact_lock(hashtextextended('callscribe_run_key ' || :run_key, 0))
