-- One row in access_log about one recording, only while it is transcribed: false when it is not
-- (erased or replaced since the page looked it up), and then the page serves nothing. Read-write
-- whatever default the login has (access_log_write.sql).
SET TRANSACTION READ WRITE;

SELECT analytics.log_call_access(CAST(:actor AS text), CAST(:action AS text), CAST(:detail AS text),
                                 CAST(:rid AS bigint))
