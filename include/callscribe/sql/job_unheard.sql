-- At a run's close: a job of its last plan that no worker ever heard (discovery.pay_unheard_jobs)
-- gives its calls back the attempt the run counted, as the load would have (job_unfinished.sql
-- for the deployment), with the job's note as their reason. Only rows still holding that attempt:
-- a later close of the same run (a task cleared after its report) changes nothing, nor a reason
-- its report wrote since.
UPDATE recordings
SET last_error = CASE WHEN status = 'done' THEN last_error ELSE :reason END, updated_at = now(),
    attempts = GREATEST(attempts - 1, 0), attempted_run_id = NULL
WHERE id = ANY(:ids) AND last_run_id = :run_id AND attempted_run_id = :run_id
  AND status IN ('pending', 'chunked', 'failed', 'done')
