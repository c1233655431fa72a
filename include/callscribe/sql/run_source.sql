-- What a run id listed (run_listed.sql): bucket/prefix, and the DAG; locked until the listing is noted.
SELECT source, dag_id FROM pipeline_runs WHERE run_id = :run_id FOR UPDATE
