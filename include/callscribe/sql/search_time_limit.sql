-- The analysts' login's statement_timeout, in milliseconds (0: none): what a search cut short ran against.
SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'
