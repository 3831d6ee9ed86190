-- The last task of the last stage: processing -> completed | completed_with_errors.
UPDATE app.jobs
SET status = $4::text::app.job_status, result_data = $5, completed_at = now(),
    stage_results = stage_results || jsonb_build_object($2::int::text, $6::jsonb),
    error_details = $7
WHERE job_id = $1 AND status = 'processing' AND stage = $2 AND attempt = $3
RETURNING status::text
