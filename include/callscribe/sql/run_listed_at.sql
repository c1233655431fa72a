SELECT listed_at FROM pipeline_runs WHERE run_id = :run_id
