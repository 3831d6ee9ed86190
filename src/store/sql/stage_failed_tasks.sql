SELECT task_id, task_seq, COALESCE(error_details, '') FROM app.tasks
WHERE parent_job_id = $1 AND stage = $2 AND status = 'failed'
ORDER BY task_seq LIMIT $3
