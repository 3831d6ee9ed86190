-- Why a claim matched nothing: the task's and its job's current state.
SELECT t.status::text, t.retry_count, t.lease_expires_at > now() AS lease_live, j.status::text AS job_status,
       t.parent_job_id, t.stage, t.job_attempt
FROM app.tasks t JOIN app.jobs j ON j.job_id = t.parent_job_id
WHERE t.task_id = $1
