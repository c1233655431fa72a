-- An erasure note's key has no rows (the database was restored to before any run registered it):
-- remembered as erased all the same, so no run registers it, and the re-applied erasure is logged.
-- No recording ids: ids in the note's timeline may name other calls in this one.
WITH remembered AS (
    INSERT INTO erasures (bucket, key_sha256, call_date)
    VALUES (:bucket, :hash, CAST(:call_date AS date))
    ON CONFLICT (bucket, key_sha256) DO NOTHING
    RETURNING key_sha256
)
INSERT INTO access_log (actor, action, detail, key_sha256)
SELECT :actor, 'erase', :detail, key_sha256 FROM remembered
