-- At most $4 tasks of the jobs $1 still past retention (see retention_delete_events.sql).
WITH j AS (
  SELECT job_id FROM app.jobs
  WHERE job_id = ANY($1::text[]) AND app.past_retention(status, completed_at, $2, $3)
  FOR SHARE
)
DELETE FROM app.tasks WHERE task_id IN (
  SELECT task_id FROM app.tasks WHERE parent_job_id IN (SELECT job_id FROM j) LIMIT $4)
