SELECT id, bucket, object_key, etag, call_date FROM recordings WHERE id = :id
