-- What the page's database login may do: it must be an analyst that cannot read the raw tables.
SELECT current_user AS login, pg_has_role(current_user, 'callscribe_analyst', 'MEMBER') AS analyst,
       has_table_privilege('public.segments', 'SELECT') AS raw,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super
