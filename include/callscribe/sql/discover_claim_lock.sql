-- Taken first in a claim's transaction, per bucket and day: shared by plain claims (which may
-- claim side by side, SKIP LOCKED sharing the rows), exclusive by a reprocess claim. A reprocess
-- claim records what it did not take and who holds it (discover_held_back.sql): rows another
-- claim has locked but not committed would read as held by whoever had them before (a run long
-- over, or nobody), and two reprocess runs started together would split the day between them.
SELECT CASE WHEN CAST(:reprocess AS boolean)
            THEN (SELECT true FROM pg_advisory_xact_lock(k))
            ELSE (SELECT true FROM pg_advisory_xact_lock_shared(k)) END
FROM (SELECT hashtextextended('callscribe_claim ' || :bucket || ' ' || CAST(:call_date AS text), 0) AS k) AS day_key
