-- Retry of failed tasks: these tasks' rows leave app.tasks for app.task_archive, whole, keyed by
-- the attempt they belonged to; the retry inserts them again as queued under the same task id.
WITH moved AS (
  DELETE FROM app.tasks t WHERE t.parent_job_id = $1 AND t.task_id = ANY($2::text[])
  RETURNING t.*
)
INSERT INTO app.task_archive (task_id, parent_job_id, job_attempt, stage, status, task_row)
SELECT m.task_id, m.parent_job_id, m.job_attempt, m.stage, m.status::text, to_jsonb(m) FROM moved m
ON CONFLICT (task_id, job_attempt) DO NOTHING
