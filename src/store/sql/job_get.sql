SELECT job_id, job_type, parameters, status::text AS status, stage, total_stages, stage_results, metadata,
       result_data, error_details, created_at, updated_at, attempt, correlation_id, traceparent, completed_at
FROM app.jobs WHERE job_id = $1
