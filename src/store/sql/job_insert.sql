-- Submit: create the job unless it exists (content-addressed id makes submit idempotent).
INSERT INTO app.jobs (job_id, job_type, parameters, status, stage, total_stages, metadata, correlation_id, traceparent)
VALUES ($1, $2, $3, 'queued', 1, $4, $5, $6, $7)
ON CONFLICT (job_id) DO NOTHING
RETURNING created_at
