-- Erasures made within the work area's retention (erasure.finish_cleanups): their speech packs and
-- work files may still be there when the store stopped their clean-up, and nobody knows the key to
-- run the erase again (an erasure re-applied from its note by a discovery whose retry skipped it).
SELECT bucket, key_sha256, call_date, recording_ids FROM erasures
WHERE erased_at > now() - make_interval(secs => CAST(:within_s AS double precision))
  AND call_date IS NOT NULL AND cardinality(recording_ids) > 0
ORDER BY erased_at
