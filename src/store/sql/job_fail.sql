-- Any live status -> failed, with the reason. Returns the row it changed (none = it was not live).
UPDATE app.jobs
SET status = 'failed', error_details = $2, completed_at = now(),
    result_data = COALESCE(result_data, '{}'::jsonb) || $3::jsonb
WHERE job_id = $1 AND status IN ('queued', 'processing')
RETURNING status::text, stage, attempt
