-- A recording's state and metadata as a metadata fix finds them, locked until it is applied.
SELECT status, channels, metadata FROM recordings WHERE id = :id FOR UPDATE
