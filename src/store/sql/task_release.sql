-- An attempt whose outcome could not be recorded (the completion's transaction failed): processing ->
-- queued for exactly this attempt, with its event, so that the redelivered message claims the task
-- again and its handler runs again. $5: the claim's fencing token (nothing is released when the
-- task was taken over since). The caller holds the job row FOR SHARE (job_lock_share.sql):
-- a concurrent job failure either committed first (the caller then cancels the task) or waits for
-- this release and then cancels the queued task itself.
WITH t AS (
  UPDATE app.tasks SET status = 'queued', lease_expires_at = NULL
  WHERE task_id = $1 AND status = 'processing' AND retry_count = $2
    AND ($5::int IS NULL OR claim_token = $5)
  RETURNING task_id, parent_job_id, stage
), e AS (
  INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name,
                              event_data, error_class, error_type, error_message)
  SELECT t.parent_job_id, t.task_id, t.stage, $2 + 1, 'task_released', 'warning', 'TASK_CLAIM_RELEASED',
         $3::jsonb, 'transient', 'OutcomeNotRecorded', left($4, 1000)
  FROM t
)
SELECT t.task_id FROM t
