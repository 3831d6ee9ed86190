-- Task messages of one invocation (one message, or a batch): each queued -> processing for exactly
-- the attempt it names, only while its job is processing that job attempt; the task_started
-- events are written in the same statement. ONE statement for the whole batch.
-- $3, each message's job attempt: a retry of failed tasks re-queues them under the same task id
-- for the new attempt, so a late message of the earlier attempt must not claim the new row.
-- Takeover: a task still processing is claimed again when its lease ran out, or when this message
-- was delivered more often ($4, DeliveryCount) than the delivery that claimed it: message ids are
-- deterministic (one per task attempt), so a higher count is the same message again after its
-- earlier holder lost the lock (it died, or stalled past the lock). Every claim increments
-- claim_token, the fencing token that the attempt's completion, retry or release must name.
-- `p` reads the tasks by primary key and `j` their jobs, both materialised first; `t` is then
-- reachable only by its primary key. (Joined to the jobs directly, a generic plan made while the
-- tasks table's statistics were stale went jobs -> every task of the job -> filter, once per
-- message: 15-25 ms a claim of 32 at N=1,000, auto_explain.) `p` is the snapshot's previous
-- claim, for the event only; the guard is on `t`.
WITH i AS (
  SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::int[]) AS u(task_id, retry_count, job_attempt, delivery_count)
), p AS MATERIALIZED (
  SELECT k.task_id, k.parent_job_id, k.status::text AS prev_status, k.claim_token AS prev_token,
         k.claim_delivery_count AS prev_delivery
  FROM app.tasks k WHERE k.task_id = ANY($1::text[])
), j AS MATERIALIZED (
  SELECT job_id, attempt, correlation_id FROM app.jobs
  WHERE job_id IN (SELECT parent_job_id FROM p) AND status = 'processing'
), c AS (
  UPDATE app.tasks t
  SET status = 'processing', lease_expires_at = now() + make_interval(secs => $5),
      heartbeat = now(), started_at = now(), updated_at = now(),
      claim_token = t.claim_token + 1, claim_delivery_count = i.delivery_count
  FROM i, p, j
  WHERE t.task_id = ANY($1::text[]) AND t.task_id = i.task_id AND p.task_id = i.task_id
    AND j.job_id = p.parent_job_id AND j.attempt = i.job_attempt
    AND t.retry_count = i.retry_count AND t.job_attempt = i.job_attempt
    AND (t.status::text = 'queued'
         OR (t.status::text = 'processing'
             AND (t.lease_expires_at < now() OR i.delivery_count > t.claim_delivery_count)))
  RETURNING t.task_id, t.parent_job_id, t.job_type, t.task_type, t.stage, t.task_seq, t.parameters,
            t.retry_count, t.job_attempt, j.correlation_id, t.counter_shard, t.claim_token,
            i.delivery_count, (p.prev_status = 'processing') AS took_over, p.prev_token,
            p.prev_delivery
), e AS (
  INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name, event_data)
  SELECT c.parent_job_id, c.task_id, c.stage, c.retry_count + 1, 'task_started', 'info', 'TASK_CLAIMED',
         jsonb_build_object('task_type', c.task_type, 'invocation_id', $6::text,
                            'delivery_count', c.delivery_count, 'claim', c.claim_token)
         || CASE WHEN c.took_over
                 THEN jsonb_build_object('took_over_claim', c.prev_token, 'from_delivery', c.prev_delivery)
                 ELSE '{}'::jsonb END
  FROM c
)
SELECT * FROM c
