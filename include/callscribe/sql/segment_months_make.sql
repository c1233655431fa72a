-- Create the month of :month (a first day), moving its rows out of the default partition.
SELECT callscribe_segment_months(CAST(:month AS date), CAST(:month AS date))
