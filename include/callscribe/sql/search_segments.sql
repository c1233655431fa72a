-- Full-text search over segments (websearch syntax); every hit says where to listen.
SELECT r.object_key, r.call_date, s.channel, s.speaker, s.start_s, s.end_s,
       ts_headline('english', s.text, q, 'StartSel=[, StopSel=], MaxFragments=2, MinWords=4, MaxWords=18')
           AS snippet,
       ts_rank(s.tsv, q) AS rank
FROM segments AS s
JOIN recordings AS r ON r.id = s.recording_id,
     websearch_to_tsquery('english', :query) AS q
WHERE s.tsv @@ q
  AND (CAST(:speaker AS text) IS NULL OR s.speaker = :speaker)
ORDER BY rank DESC, r.call_date DESC, r.object_key, s.start_s
LIMIT :limit
