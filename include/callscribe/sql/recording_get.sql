SELECT id, bucket, object_key, etag, call_date, status, last_run_id, attempted_run_id, chunking_since,
       object_modified
FROM recordings WHERE id = :id
