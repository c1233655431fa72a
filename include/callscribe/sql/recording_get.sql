SELECT id, bucket, object_key, etag, call_date, status, last_run_id FROM recordings WHERE id = :id
