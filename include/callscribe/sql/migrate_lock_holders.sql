-- The sessions holding a lock on one of callscribe's tables or views (schemas public and analytics)
-- in this database, oldest transaction first, for a migration that gave up waiting (db.migrate):
-- at most :n. pg_locks is readable by every login; pg_stat_activity shows another login's state and
-- transaction start only to a superuser or a member of pg_read_all_stats (NULL otherwise).
SELECT a.pid, a.usename, a.application_name, a.state, a.xact_start,
       string_agg(DISTINCT l.relation::regclass::text, ', ') AS tables
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
JOIN pg_class AS c ON c.oid = l.relation
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE l.locktype = 'relation' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid <> pg_backend_pid()
  AND n.nspname IN ('public', 'analytics') AND c.relkind IN ('r', 'p', 'v', 'm')  -- tables and views, not indexes
GROUP BY a.pid, a.usename, a.application_name, a.state, a.xact_start
ORDER BY a.xact_start NULLS LAST, a.pid
LIMIT :n
