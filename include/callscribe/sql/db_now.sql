-- The database's time now, not its transaction's: when a listing begins, in the clock rows are stamped with.
SELECT clock_timestamp()
