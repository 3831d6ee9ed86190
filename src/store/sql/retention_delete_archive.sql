-- At most $4 archived task rows (earlier attempts) of the jobs $1 still past retention.
WITH j AS (
  SELECT job_id FROM app.jobs
  WHERE job_id = ANY($1::text[]) AND app.past_retention(status, completed_at, $2, $3)
  FOR SHARE
)
DELETE FROM app.task_archive WHERE (task_id, job_attempt) IN (
  SELECT task_id, job_attempt FROM app.task_archive
  WHERE parent_job_id IN (SELECT job_id FROM j) LIMIT $4)
