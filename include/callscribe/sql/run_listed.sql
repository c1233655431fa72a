-- A run lists its days' prefixes now: objects newer than this are the next run's to find (the
-- store's reading of the time follows: run_listed_store.sql).
-- What an earlier listing under this run id held back is forgotten: this one claims anew, and
-- the id's leases are this DAG's run's now (the other DAG's run under the same id, if any, is over).
-- The source (bucket/prefix) is the first listing's: another is refused before this (reporting.run_listed).
INSERT INTO pipeline_runs (run_id, dag_id, call_date, engine, listed_at, source)
VALUES (:run_id, :dag_id, :call_date, :engine, now(), :source)
ON CONFLICT (run_id) DO UPDATE SET listed_at = now(), store_listed_at = NULL, uploads_in_flight = NULL,
    held_back = NULL,
    dag_id = EXCLUDED.dag_id, source = COALESCE(pipeline_runs.source, EXCLUDED.source)
