-- How many of the day's unfinished recordings another live run holds.
SELECT count(*) FROM recordings
WHERE bucket = :bucket AND call_date = :call_date AND starts_with(object_key, :prefix)
  AND status IN ('pending', 'chunked', 'failed')
  AND lease_until >= now() AND last_run_id <> :run_id
