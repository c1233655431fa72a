-- Staging table for one listing of the bucket; dropped at commit.
CREATE TEMP TABLE listing (
    bucket     text NOT NULL,
    object_key text NOT NULL,
    etag       text NOT NULL,
    size_bytes bigint NOT NULL,
    call_id    text NOT NULL,
    status     text NOT NULL,
    last_error text,
    last_modified timestamptz  -- the store's; whole seconds on most
) ON COMMIT DROP
