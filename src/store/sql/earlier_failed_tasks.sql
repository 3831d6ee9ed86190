-- Failed tasks of every stage up to $2, in stage and task order, with their parameters (the
-- failures a tolerant job carries forward; a failure budget counts them across stages).
SELECT task_id, task_seq, COALESCE(error_details, ''), stage, parameters FROM app.tasks
WHERE parent_job_id = $1 AND stage <= $2 AND status = 'failed'
ORDER BY stage, task_seq LIMIT $3
