-- Whether a task's row was moved to the archive by a resubmit (its late messages are expected).
SELECT EXISTS (SELECT 1 FROM app.task_archive WHERE task_id = $1)
