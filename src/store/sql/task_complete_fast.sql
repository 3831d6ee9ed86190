-- Successful task completions that end no counter shard, in ONE statement run outside a
-- transaction block (its own transaction: one round trip, one commit). Each task processing ->
-- completed for exactly its attempt, its event, and the counter decrements summed per shard, as
-- task_complete_batch.sql does; but only if every shard touched stays above zero (`ok`). When a
-- shard could reach zero, nothing is changed and `ok` is false: the caller then runs
-- task_complete_batch.sql in a transaction, which ends the shard (and maybe the stage) in the same
-- transaction as the last completion.
-- `ok` is decided on an upper bound: `m` counts the tasks that are processing in the statement's
-- snapshot, the guarded UPDATE `t` can only end a subset of them (a concurrent completion of the
-- same attempt may win), and the counters, read under their row locks (latest value), are
-- decremented by what `t` actually ended. Locks: task rows (by the UPDATE), then counter rows in
-- key order, as in task_complete_batch.sql.
WITH i AS (
  SELECT * FROM unnest($1::text[], $2::int[], $3::jsonb[], $4::jsonb[], $5::int[]) AS u(task_id, retry_count, result, event_data, claim_token)
), m AS (
  SELECT k.task_id, k.parent_job_id, k.stage, k.counter_shard
  FROM app.tasks k JOIN i ON k.task_id = i.task_id
  WHERE k.task_id = ANY($1::text[]) AND k.status::text = 'processing' AND k.retry_count = i.retry_count
    AND (i.claim_token IS NULL OR k.claim_token = i.claim_token)
), d AS (
  SELECT parent_job_id, stage, counter_shard, count(*)::int AS n FROM m GROUP BY 1, 2, 3
), lc AS (
  SELECT sc.job_id, sc.stage, sc.shard, sc.remaining, d.n FROM app.stage_counters sc
  JOIN d ON sc.job_id = d.parent_job_id AND sc.stage = d.stage AND sc.shard = d.counter_shard
  ORDER BY sc.job_id, sc.stage, sc.shard
  FOR UPDATE OF sc
), ok AS (
  SELECT (SELECT count(*) FROM lc) = (SELECT count(*) FROM d)
         AND COALESCE((SELECT bool_and(remaining > n) FROM lc), true) AS ok
), t AS (
  UPDATE app.tasks k
  SET status = 'completed', result_data = i.result, error_details = NULL, error_class = NULL,
      lease_expires_at = NULL, completed_at = now(), updated_at = now()
  FROM i, ok
  WHERE ok.ok AND k.task_id = ANY($1::text[]) AND k.task_id = i.task_id
    AND k.status::text = 'processing' AND k.retry_count = i.retry_count
    AND (i.claim_token IS NULL OR k.claim_token = i.claim_token)
  RETURNING k.task_id, k.parent_job_id, k.stage, k.counter_shard, k.started_at, k.retry_count, i.event_data
), e AS (
  INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name,
                              event_data, duration_ms)
  SELECT t.parent_job_id, t.task_id, t.stage, t.retry_count + 1, 'task_completed', 'success', 'TASK_COMPLETED',
         t.event_data,
         (extract(epoch FROM clock_timestamp() - COALESCE(t.started_at, clock_timestamp())) * 1000)::int
  FROM t
), dt AS (
  SELECT parent_job_id, stage, counter_shard, count(*)::int AS n FROM t GROUP BY 1, 2, 3
), c AS (
  UPDATE app.stage_counters sc SET remaining = sc.remaining - dt.n
  FROM dt
  WHERE sc.job_id = dt.parent_job_id AND sc.stage = dt.stage AND sc.shard = dt.counter_shard
  RETURNING sc.remaining
)
SELECT ok.ok, t.task_id, (SELECT count(*) FROM c) AS shards_decremented
FROM ok LEFT JOIN t ON true
