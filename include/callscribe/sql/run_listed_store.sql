-- The listing's time read from the store's clock (reporting.run_listed), after run_listed.sql.
UPDATE pipeline_runs SET store_listed_at = :store_listed_at WHERE run_id = :run_id
