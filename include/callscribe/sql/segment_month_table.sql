-- Whether :name is a month partition attached to segments now (the loader writes a month's rows
-- straight into it; a table of that name that is not attached would hide them from search).
SELECT EXISTS (SELECT 1 FROM pg_inherits
               WHERE inhrelid = to_regclass(:name) AND inhparent = 'segments'::regclass)
