-- One row in access_log, through the only door the analysts' login has to it. Read-write whatever
-- default the login has: a DBA may set default_transaction_read_only on it (belt and braces over
-- the grants, which allow it nothing else), and the page serves nothing it could not log.
SET TRANSACTION READ WRITE;

SELECT analytics.log_access(CAST(:actor AS text), CAST(:action AS text), CAST(:detail AS text), CAST(:rid AS bigint))
