UPDATE app.jobs SET updated_at = now() WHERE job_id = $1 AND status = 'queued'
