-- Another run id whose work area (config.run_key: every run of characters outside [A-Za-z0-9._-]
-- made '_') is this run's: run ids given by hand may differ only in '~', ':' or '+', and two such runs
-- would write each other's chunk manifests, job manifests and shards. Only runs that listed: a run
-- refused here still reports (a row without listed_at), and must not lock the first run out of its own
-- work area (cleared, it lists again).
SELECT run_id FROM pipeline_runs
WHERE run_id <> :run_id AND listed_at IS NOT NULL
  AND regexp_replace(run_id, '[^A-Za-z0-9._-]+', '_', 'g') = :run_key
ORDER BY listed_at DESC
LIMIT 1
