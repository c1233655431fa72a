-- The verdict's cut-off for late uploads: on the store's clock, where the objects' times are,
-- when the run read it (a run from before revision 0030, or given no store: the database's).
SELECT COALESCE(store_listed_at, listed_at) FROM pipeline_runs WHERE run_id = :run_id
