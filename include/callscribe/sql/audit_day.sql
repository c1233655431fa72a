-- Every registered version of a day's objects, with what an audit checks of each: of a copy, its
-- original's state (and, on another day or under another prefix, its key and the run holding it, if any). A transcribed
-- one also names the oldest other key within :window days, on another day, whose current upload
-- holds a transcript of the same content (etag and size, or the bytes the chunker read: copies are
-- one call), and the run holding it, if any.
SELECT r.id, r.object_key, r.etag, r.size_bytes, r.content_sha256, r.status, r.last_error, r.channels, r.loads, r.lease_until, r.last_run_id,
       r.attempts, r.loaded_run_id, r.redo_since,
       COALESCE(r.lease_until > now(), false)                          AS leased,
       (SELECT o.status FROM recordings o WHERE o.id = r.duplicate_of)  AS original_status,
       (SELECT o.attempts FROM recordings o WHERE o.id = r.duplicate_of) AS original_attempts,
       -- On another day, or under another prefix than the audited one (copies are matched across the
       -- bucket; a run takes only its prefix): no run of this day and prefix transcribes it.
       (SELECT o.object_key FROM recordings o WHERE o.id = r.duplicate_of
          AND (o.call_date <> r.call_date OR NOT starts_with(o.object_key, :prefix)))
                                                                        AS original_elsewhere,
       (SELECT o.call_date FROM recordings o WHERE o.id = r.duplicate_of) AS original_day,
       (SELECT o.last_run_id FROM recordings o WHERE o.id = r.duplicate_of AND o.lease_until > now())
                                                                        AS original_holder,
       (SELECT count(*) FROM transcripts t WHERE t.recording_id = r.id) AS transcripts,
       (SELECT count(*) - count(DISTINCT (s.channel, s.start_s, s.end_s))
          FROM segments s WHERE s.recording_id = r.id)                  AS repeated_segments,
       twin.object_key AS twin_key, twin.call_date AS twin_day, twin.holder AS twin_holder
FROM recordings AS r
LEFT JOIN LATERAL (
    SELECT c.object_key, c.call_date, CASE WHEN c.lease_until > now() THEN c.last_run_id END AS holder
    FROM (  -- by etag, and by bytes, each through its own index
        SELECT e.id, e.bucket, e.object_key, e.call_date, e.status, e.lease_until, e.last_run_id
        FROM recordings AS e
        WHERE r.status = 'done' AND r.size_bytes > 0
          AND e.bucket = r.bucket AND e.etag = r.etag AND e.size_bytes = r.size_bytes
        UNION ALL
        SELECT b.id, b.bucket, b.object_key, b.call_date, b.status, b.lease_until, b.last_run_id
        FROM recordings AS b
        WHERE r.status = 'done' AND r.content_sha256 IS NOT NULL
          AND b.content_sha256 = r.content_sha256 AND b.bucket = r.bucket
    ) AS c
    WHERE c.status = 'done' AND c.call_date <> r.call_date
      AND c.call_date BETWEEN r.call_date - CAST(:window AS integer) AND r.call_date + CAST(:window AS integer)
      AND NOT EXISTS (SELECT 1 FROM recordings AS n
                      WHERE n.bucket = c.bucket AND n.object_key = c.object_key AND n.id > c.id
                        AND n.status <> 'superseded')
    ORDER BY c.id
    LIMIT 1
) AS twin ON true
WHERE r.bucket = :bucket AND r.call_date = :call_date AND starts_with(r.object_key, :prefix)
ORDER BY r.object_key, r.id
