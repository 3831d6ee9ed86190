SELECT parent_job_id, status::text, stage, task_seq, task_type FROM app.tasks WHERE task_id = $1
