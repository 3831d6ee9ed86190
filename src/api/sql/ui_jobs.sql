-- The web page's job list: newest first, optionally one status ($1) and one job type ($2).
SELECT j.job_id, j.job_type, j.status::text AS status, j.stage, j.total_stages, j.created_at,
       j.updated_at, j.completed_at, left(j.error_details, 300) AS error_details,
       (SELECT count(*) FROM app.tasks t WHERE t.parent_job_id = j.job_id) AS task_count,
       (SELECT count(*) FROM app.tasks t WHERE t.parent_job_id = j.job_id AND t.status = 'failed') AS failed_tasks
FROM app.jobs j
WHERE ($1::text IS NULL OR j.status::text = $1) AND ($2::text IS NULL OR j.job_type = $2)
ORDER BY j.created_at DESC, j.job_id DESC
LIMIT $3
