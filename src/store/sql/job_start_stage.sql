-- Job message: queued -> processing for exactly this stage and attempt. No row = duplicate or stale.
UPDATE app.jobs SET status = 'processing'
WHERE job_id = $1 AND status = 'queued' AND stage = $2 AND attempt = $3
RETURNING job_type, parameters, total_stages, correlation_id, traceparent
