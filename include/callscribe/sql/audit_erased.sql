-- Which of the listed keys (by hash) were erased on request: accounted for, not lost.
SELECT key_sha256 FROM erasures WHERE bucket = :bucket AND key_sha256 = ANY(:hashes)
