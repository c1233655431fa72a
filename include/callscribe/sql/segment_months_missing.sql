-- The months among :months (first days) without a partition of segments (migration 0014).
SELECT m FROM unnest(CAST(:months AS date[])) AS m
WHERE to_regclass('segments_y' || to_char(m, 'YYYY') || 'm' || to_char(m, 'MM')) IS NULL
ORDER BY m
