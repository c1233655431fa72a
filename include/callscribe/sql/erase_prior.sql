-- An earlier erasure of the key, with the recording ids it removed (to finish its clean-up).
SELECT call_date, recording_ids FROM erasures WHERE bucket = :bucket AND key_sha256 = :hash
