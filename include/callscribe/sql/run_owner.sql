-- Which DAG's run listed the bucket under this run id last (run_listed.sql), and what it listed
-- (bucket/prefix): the one whose calls the id's leases and figures are.
SELECT dag_id, source FROM pipeline_runs WHERE run_id = :run_id
