-- Every erasure the database remembers, for the daily check that each has its note in the bucket
-- (erasure.keep_notes): the key's hash and day, as the note holds them.
SELECT bucket, key_sha256, call_date FROM erasures ORDER BY bucket, key_sha256
