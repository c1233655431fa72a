-- Whether a recording the data set read at its start is still `done` with the same content, just
-- before its examples are written: a build reads its calls through one long cursor (the snapshot
-- of its start), and a call erased, deleted or replaced since must not be written after the fact.
SELECT EXISTS (SELECT 1 FROM recordings WHERE id = :id AND status = 'done' AND etag = :etag)
