-- The multipart uploads under way when the run listed (reporting.run_listed), after run_listed.sql:
-- [key hash, began] pairs, a JSON list.
UPDATE pipeline_runs SET uploads_in_flight = CAST(:uploads AS jsonb) WHERE run_id = :run_id
