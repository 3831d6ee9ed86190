-- processing -> queued with attempt + 1, only while the job is processing (its row is share-locked,
-- so a concurrent job failure either waits for this retry and then cancels it, or wins and this
-- matches nothing). $6: the claim's fencing token (NULL: the janitor, for an expired lease). The retry message is written to the outbox in the same transaction.
WITH t AS (
  UPDATE app.tasks
  SET status = 'queued', retry_count = retry_count + 1, lease_expires_at = NULL,
      error_details = $3, error_class = 'transient'
  WHERE task_id = $1 AND status = 'processing' AND retry_count = $2
    AND ($6::int IS NULL OR claim_token = $6)
    AND EXISTS (SELECT 1 FROM app.jobs j WHERE j.job_id = app.tasks.parent_job_id AND j.status = 'processing' FOR SHARE)
  RETURNING task_id, parent_job_id, job_type, task_type, stage, task_seq, parameters, retry_count, job_attempt
), e AS (
  INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name,
                              event_data, error_class, error_type, error_message)
  SELECT t.parent_job_id, t.task_id, t.stage, $2 + 1, 'task_retrying', 'warning', 'TASK_RETRY_SCHEDULED',
         $4::jsonb, 'transient', $5, left($3, 1000)
  FROM t
)
SELECT * FROM t
