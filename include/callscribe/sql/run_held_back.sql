-- What a run's reprocess claim left to other live runs (discover_held_back.sql).
UPDATE pipeline_runs SET held_back = CAST(:held_back AS jsonb) WHERE run_id = :run_id
