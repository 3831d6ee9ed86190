-- Tasks of job $1 in stage and task order, optional $2 stage and $3 status, keyset cursor
-- ($4 stage, $5 task_seq of the last row already returned); $6 rows at most.
SELECT task_id, parent_job_id, job_type, task_type, stage, task_index, task_seq, status::text AS status,
       parameters, result_data, error_details, error_class, retry_count, job_attempt, heartbeat,
       started_at, completed_at, created_at, updated_at
FROM app.tasks
WHERE parent_job_id = $1
  AND ($2::int IS NULL OR stage = $2::int)
  AND ($3::text IS NULL OR status = $3::text::app.task_status)
  AND ($4::int IS NULL OR (stage, task_seq) > ($4::int, $5::int))
ORDER BY stage, task_seq
LIMIT $6
