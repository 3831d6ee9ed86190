-- One platform request with its job's state.
SELECT r.request_id, r.dataset_id, r.resource_id, r.version_id, r.data_type, r.client_id,
       r.request, r.outputs, r.created_at, r.job_id, j.job_type, j.status::text AS job_status,
       j.stage, j.total_stages, j.result_data, j.error_details, j.updated_at, j.completed_at
FROM app.platform_requests r JOIN app.jobs j ON j.job_id = r.job_id
WHERE r.request_id = $1
