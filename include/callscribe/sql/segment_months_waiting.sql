-- The months of the rows waiting in the default partition (their making was held off, or a row
-- came in by hand): normally none, so this reads a small table.
SELECT DISTINCT date_trunc('month', call_date)::date AS m FROM segments_default ORDER BY m
