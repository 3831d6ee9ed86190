-- Resubmit: the stage rows (and their fan-in counters) of stage $2 and later are built again.
DELETE FROM app.job_stages WHERE job_id = $1 AND stage >= $2
