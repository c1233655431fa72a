SELECT held_back FROM pipeline_runs WHERE run_id = :run_id
