UPDATE app.job_stages SET status = $3, completed_at = now()
WHERE job_id = $1 AND stage = $2 AND status = 'running'
RETURNING started_at
