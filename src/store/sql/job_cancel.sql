-- Operator cancel: queued | processing -> cancelled (the caller holds the row lock from job_lock).
UPDATE app.jobs
SET status = 'cancelled', completed_at = now(), error_details = $2
WHERE job_id = $1 AND status IN ('queued', 'processing')
RETURNING stage, attempt, job_type, correlation_id
