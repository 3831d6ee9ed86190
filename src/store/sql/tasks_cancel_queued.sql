-- When a job ends early: its queued tasks will never run.
UPDATE app.tasks SET status = 'cancelled', completed_at = now()
WHERE parent_job_id = $1 AND status = 'queued'
