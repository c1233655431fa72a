-- Which DAG's run listed the bucket under this run id last (run_listed.sql): the one whose calls
-- the id's leases and figures are.
SELECT dag_id FROM pipeline_runs WHERE run_id = :run_id
