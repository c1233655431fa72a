-- Which of the recordings :ids were erased (their rows are gone; erasures keeps their ids).
SELECT DISTINCT i FROM erasures AS e, unnest(e.recording_ids) AS i
WHERE i = ANY(CAST(:ids AS bigint[]))
