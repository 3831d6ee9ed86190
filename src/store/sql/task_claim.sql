-- Task message: queued -> processing (or re-claim of an expired lease) for exactly this attempt,
-- only while its job is processing; the task_started event is written in the same statement.
-- $5, the message's job attempt: a retry of failed tasks re-queues them under the same task id
-- for the new attempt, so a late message of the earlier attempt must not claim the new row.
WITH c AS (
  UPDATE app.tasks t
  SET status = 'processing', lease_expires_at = now() + make_interval(secs => $3),
      heartbeat = now(), started_at = now()
  FROM app.jobs j
  WHERE t.task_id = $1 AND t.retry_count = $2
    AND j.job_id = t.parent_job_id AND j.status = 'processing' AND j.attempt = t.job_attempt
    AND t.job_attempt = $5::int
    AND (t.status = 'queued' OR (t.status = 'processing' AND t.lease_expires_at < now()))
  RETURNING t.task_id, t.parent_job_id, t.job_type, t.task_type, t.stage, t.task_seq, t.parameters,
            t.retry_count, t.job_attempt, j.correlation_id, t.counter_shard
), e AS (
  INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name, event_data)
  SELECT c.parent_job_id, c.task_id, c.stage, c.retry_count + 1, 'task_started', 'info', 'TASK_CLAIMED',
         jsonb_build_object('task_type', c.task_type, 'invocation_id', $4::text)
  FROM c
)
SELECT * FROM c
