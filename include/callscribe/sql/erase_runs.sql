-- The runs whose days reach back to a recording's day: their work areas may hold its rows.
SELECT run_id FROM pipeline_runs WHERE call_date BETWEEN :first AND :last
