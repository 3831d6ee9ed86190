-- One queued task of a job that has ended (failed, cancelled, completed): it will never run.
UPDATE app.tasks t SET status = 'cancelled', completed_at = now()
FROM app.jobs j
WHERE t.task_id = $1 AND t.status = 'queued'
  AND j.job_id = t.parent_job_id
  AND j.status IN ('failed', 'cancelled', 'completed', 'completed_with_errors')
RETURNING t.task_id
