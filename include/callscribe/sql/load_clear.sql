-- The old transcripts of the recordings in :ids (fenced and locked by load_fence.sql), in the
-- load's transaction: readers see them until the new ones commit. Their call metrics go with
-- the segments (a trigger).
DELETE FROM segments WHERE recording_id = ANY(:ids);

DELETE FROM transcripts WHERE recording_id = ANY(:ids)
