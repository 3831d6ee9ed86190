-- At most $4 events of the jobs $1 that are still past retention ($2 completed, $3 failed:
-- seconds). The jobs are re-checked and locked FOR SHARE: a job resubmitted meanwhile keeps its
-- rows, and a resubmit waits for this one short batch. The janitor repeats it until it deletes
-- fewer than $4.
WITH j AS (
  SELECT job_id FROM app.jobs
  WHERE job_id = ANY($1::text[]) AND app.past_retention(status, completed_at, $2, $3)
  FOR SHARE
)
DELETE FROM app.job_events WHERE event_id IN (
  SELECT event_id FROM app.job_events WHERE job_id IN (SELECT job_id FROM j) LIMIT $4)
