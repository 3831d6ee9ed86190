-- Jobs newest first with optional filters ($1 status, $2 job_type, $3 created within hours) and a
-- keyset cursor ($4 created_at, $5 job_id of the last row already returned); $6 rows at most.
SELECT job_id, job_type, parameters, status::text AS status, stage, total_stages, attempt,
       result_data, error_details, correlation_id, created_at, updated_at, completed_at
FROM app.jobs
WHERE ($1::text IS NULL OR status = $1::text::app.job_status)
  AND ($2::text IS NULL OR job_type = $2::text)
  AND ($3::int IS NULL OR created_at >= now() - make_interval(hours => $3::int))
  AND ($4::timestamptz IS NULL OR (created_at, job_id) < ($4::timestamptz, $5::text))
ORDER BY created_at DESC, job_id DESC
LIMIT $6
