-- Platform requests, newest first, with their jobs' state: dataset $1 (or all), keyset after
-- ($2 created_at, $3 request_id) when given, at most $4 rows.
SELECT r.request_id, r.dataset_id, r.resource_id, r.version_id, r.data_type, r.client_id,
       r.request, r.outputs, r.created_at, r.job_id, j.job_type, j.status::text AS job_status,
       j.stage, j.total_stages, j.result_data, j.error_details, j.updated_at, j.completed_at
FROM app.platform_requests r JOIN app.jobs j ON j.job_id = r.job_id
WHERE ($1::text IS NULL OR r.dataset_id = $1)
  AND ($2::timestamptz IS NULL OR (r.created_at, r.request_id) < ($2, $3::text))
ORDER BY r.created_at DESC, r.request_id DESC
LIMIT $4
