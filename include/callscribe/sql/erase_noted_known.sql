-- Which of the key hashes an erasure note in the bucket names the database remembers as erased
-- (erasure.reapply): one it lacks was erased after the point a restore took the database back to.
SELECT key_sha256 FROM erasures WHERE bucket = :bucket AND key_sha256 = ANY(CAST(:hashes AS text[]))
