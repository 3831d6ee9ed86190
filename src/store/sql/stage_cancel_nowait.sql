-- Cancel, last statement: a stage started while the cancel waited for the job row is closed too.
-- NOWAIT: if a completion holds the row it is waiting for our job lock; fail fast and retry.
WITH s AS (
  SELECT job_id, stage FROM app.job_stages
  WHERE job_id = $1 AND status = 'running' FOR UPDATE NOWAIT
)
UPDATE app.job_stages js SET status = 'cancelled', completed_at = now()
FROM s WHERE js.job_id = s.job_id AND js.stage = s.stage
