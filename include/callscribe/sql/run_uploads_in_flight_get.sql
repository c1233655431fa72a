SELECT uploads_in_flight FROM pipeline_runs WHERE run_id = :run_id
