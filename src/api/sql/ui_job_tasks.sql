-- The web page's task table of one job: every task in stage order, with its last attempt's duration.
SELECT task_id, stage, task_seq, task_index, task_type, status::text AS status, retry_count,
       error_class, left(error_details, 1000) AS error_details, started_at, completed_at,
       (extract(epoch FROM completed_at - started_at) * 1000)::bigint AS duration_ms
FROM app.tasks
WHERE parent_job_id = $1
ORDER BY stage, task_seq
LIMIT $2
