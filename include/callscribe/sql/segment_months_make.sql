-- Create the month of :month (a first day), moving its rows out of the default partition, under
-- partitions._make's short lock_timeout. The locks the move and the attach need are taken first;
-- only the first is waited for (holding nothing another transaction waits for: no deadlock), the
-- others are taken at once or the try is given up (and tried again):
-- - segments itself (SHARE: writers, not readers): no write is under way, so the move sees every
--   row of the month in the default partition and none comes in before the attach checks it
--   (which would fail on it), and no deletion waits on the moved rows; a writer that comes later
--   waits and then plans with the month attached (one planned before would miss the moved rows:
--   a reprocess's old transcript, an erased call's text);
-- - the default partition, as the attach takes it, without waiting: a request waiting behind an
--   analyst's long query would hold up every later query on the default partition;
-- - recordings, as the attach takes it (for segments' declared foreign key), without waiting: an
--   erasure holds it while it waits for segments.
SELECT pg_advisory_xact_lock(hashtext('callscribe_segment_months'));

LOCK TABLE ONLY segments IN SHARE MODE;

LOCK TABLE segments_default IN ACCESS EXCLUSIVE MODE NOWAIT;

LOCK TABLE recordings IN SHARE ROW EXCLUSIVE MODE NOWAIT;

SELECT callscribe_segment_months(CAST(:month AS date), CAST(:month AS date))
