-- Several successful task completions in one statement (grouped completions, see
-- engine/completions.rs): each task processing -> completed for exactly its attempt and claim
-- (fencing token, task_claim.sql; NULL: any claim), its event, and
-- the fan-in decrements. Tasks of the same counter shard are summed first, so each shard row and
-- each stage row is updated once, under its row lock, against the latest committed value: exactly
-- one transaction sees a shard reach 0, and exactly one sees the stage's shards_left reach 0.
-- Several groups may commit at once: each locks its counter rows, then its stage rows, in key
-- order (the ORDER BY ... FOR UPDATE CTEs), so two groups never wait on each other in a cycle.
WITH i AS (
  SELECT * FROM unnest($1::text[], $2::int[], $3::jsonb[], $4::jsonb[], $5::int[]) AS u(task_id, retry_count, result, event_data, claim_token)
), t AS (
  UPDATE app.tasks k
  SET status = 'completed', result_data = i.result, error_details = NULL, error_class = NULL,
      lease_expires_at = NULL, completed_at = now(), updated_at = now()
  FROM i
  -- Written so that the plan stays on the primary key even while the table's statistics are stale
  -- (a plain status = 'processing' lets the planner also scan the partial lease index, i.e. every
  -- processing task of every job, for each group).
  WHERE k.task_id = ANY($1::text[]) AND k.task_id = i.task_id AND k.status::text = 'processing'
    AND k.retry_count = i.retry_count
    AND (i.claim_token IS NULL OR k.claim_token = i.claim_token)
  RETURNING k.task_id, k.parent_job_id, k.stage, k.counter_shard, k.started_at, k.retry_count, i.event_data
), e AS (
  INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name,
                              event_data, duration_ms)
  SELECT t.parent_job_id, t.task_id, t.stage, t.retry_count + 1, 'task_completed', 'success', 'TASK_COMPLETED',
         t.event_data,
         (extract(epoch FROM clock_timestamp() - COALESCE(t.started_at, clock_timestamp())) * 1000)::int
  FROM t
), d AS (
  SELECT parent_job_id, stage, counter_shard, count(*)::int AS n FROM t GROUP BY 1, 2, 3
), lc AS (
  SELECT sc.job_id, sc.stage, sc.shard, d.n FROM app.stage_counters sc
  JOIN d ON sc.job_id = d.parent_job_id AND sc.stage = d.stage AND sc.shard = d.counter_shard
  ORDER BY sc.job_id, sc.stage, sc.shard
  FOR UPDATE OF sc
), c AS (
  UPDATE app.stage_counters sc SET remaining = sc.remaining - lc.n
  FROM lc
  WHERE sc.job_id = lc.job_id AND sc.stage = lc.stage AND sc.shard = lc.shard
  RETURNING sc.job_id, sc.stage, sc.remaining
), z AS (
  SELECT job_id, stage, count(*)::smallint AS zeroed FROM c WHERE remaining = 0 GROUP BY 1, 2
), ls AS (
  SELECT js.job_id, js.stage, z.zeroed FROM app.job_stages js
  JOIN z ON js.job_id = z.job_id AND js.stage = z.stage
  ORDER BY js.job_id, js.stage
  FOR UPDATE OF js
), s AS (
  UPDATE app.job_stages js SET shards_left = js.shards_left - ls.zeroed
  FROM ls
  WHERE js.job_id = ls.job_id AND js.stage = ls.stage
  RETURNING js.job_id, js.stage, js.shards_left
)
SELECT t.task_id, t.parent_job_id, t.stage, s.shards_left
FROM t LEFT JOIN s ON s.job_id = t.parent_job_id AND s.stage = t.stage
