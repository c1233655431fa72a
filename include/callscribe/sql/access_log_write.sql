-- One row in access_log, through the only door the analysts' login has to it.
SELECT analytics.log_access(CAST(:actor AS text), CAST(:action AS text), CAST(:detail AS text), CAST(:rid AS bigint))
