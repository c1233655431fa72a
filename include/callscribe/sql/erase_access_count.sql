-- The access log's entries about a recording (by id, or by key hash for any version); the
-- records of earlier erasures stay.
SELECT count(*) FROM access_log WHERE (recording_id = ANY(:ids) OR key_sha256 = :hash) AND action <> 'erase'
