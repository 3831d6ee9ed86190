-- The last task of stage $2: processing -> queued at stage $2 + 1, stage summary recorded.
UPDATE app.jobs
SET status = 'queued', stage = stage + 1,
    stage_results = stage_results || jsonb_build_object($2::int::text, $4::jsonb)
WHERE job_id = $1 AND status = 'processing' AND stage = $2 AND attempt = $3
RETURNING job_type, parameters, correlation_id, traceparent
