-- Resubmit: failed | cancelled -> queued at stage $2 with attempt + 1 (the transition trigger
-- allows exactly this). Results of the kept stages stay; the previous outcome goes to metadata.attempts.
UPDATE app.jobs
SET status = 'queued', attempt = attempt + 1, stage = $2, completed_at = NULL,
    error_details = NULL, result_data = NULL,
    stage_results = COALESCE((SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(stage_results) e
                              WHERE e.key ~ '^[0-9]+$' AND e.key::int < $2), '{}'::jsonb),
    metadata = jsonb_set(metadata, '{attempts}',
                         COALESCE(metadata -> 'attempts', '[]'::jsonb) || jsonb_build_array($3::jsonb))
WHERE job_id = $1 AND status IN ('failed', 'cancelled')
RETURNING attempt, job_type, parameters, correlation_id, traceparent
