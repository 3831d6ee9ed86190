-- Failed tasks of a job in stages up to $2 (a failure budget counted across stages).
SELECT count(*) FROM app.tasks
WHERE parent_job_id = $1 AND stage <= $2 AND status = 'failed'
