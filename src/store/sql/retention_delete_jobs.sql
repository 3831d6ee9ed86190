-- The job rows of $1 still past retention ($2, $3 as in retention_delete_events.sql) whose
-- tasks, archived tasks and events are gone (their stages and counters go by cascade: a few rows
-- a job), and their message failures. Returns the deleted job ids.
WITH gone AS (
  DELETE FROM app.jobs
  WHERE job_id = ANY($1::text[]) AND app.past_retention(status, completed_at, $2, $3)
    AND NOT EXISTS (SELECT 1 FROM app.tasks t WHERE t.parent_job_id = jobs.job_id)
    AND NOT EXISTS (SELECT 1 FROM app.task_archive a WHERE a.parent_job_id = jobs.job_id)
    AND NOT EXISTS (SELECT 1 FROM app.job_events e WHERE e.job_id = jobs.job_id)
  RETURNING job_id
),
failures AS (
  DELETE FROM app.message_failures WHERE job_id IN (SELECT job_id FROM gone)
)
SELECT job_id FROM gone
