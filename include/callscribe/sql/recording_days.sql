-- The call days of the recordings :ids.
SELECT DISTINCT call_date FROM recordings WHERE id = ANY(:ids) AND call_date IS NOT NULL
