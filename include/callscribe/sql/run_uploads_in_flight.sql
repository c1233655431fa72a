-- The multipart uploads still under way when the run had listed a day (discovery.note_uploads_under_way),
-- added to those of its other days: [key hash, began] pairs, a JSON list. run_listed.sql resets it.
UPDATE pipeline_runs SET uploads_in_flight = COALESCE(uploads_in_flight, '[]'::jsonb) || CAST(:uploads AS jsonb)
WHERE run_id = :run_id
