-- processing -> completed | failed ($12: also a queued task, for poison/malformed), its event, and the fan-in decrement, in one statement.
-- $13: the claim's fencing token (task_claim.sql); NULL for an ending that holds no claim. The shard row and
-- then the stage row are decremented under their row locks, so exactly one completion of the stage
-- sees shards_left = 0 (see engine/fan_in.rs).
WITH t AS (
  UPDATE app.tasks
  SET status = $3::text::app.task_status, result_data = $4, error_details = $5, error_class = $6,
      lease_expires_at = NULL, completed_at = now(), updated_at = now()
  WHERE task_id = $1
    AND ((status = 'processing' AND retry_count = $2 AND ($13::int IS NULL OR claim_token = $13)) OR ($12::bool AND status IN ('queued', 'processing')))
  RETURNING task_id, parent_job_id, stage, counter_shard, job_attempt, task_type, started_at
), e AS (
  INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name,
                              event_data, error_class, error_type, error_message, duration_ms)
  SELECT t.parent_job_id, t.task_id, t.stage, $2 + 1, $7, $8, $9, $10::jsonb, $6, $11, left($5, 1000),
         (extract(epoch FROM clock_timestamp() - COALESCE(t.started_at, clock_timestamp())) * 1000)::int
  FROM t
), c AS (
  UPDATE app.stage_counters sc SET remaining = sc.remaining - 1
  FROM t
  WHERE sc.job_id = t.parent_job_id AND sc.stage = t.stage AND sc.shard = t.counter_shard
  RETURNING sc.job_id, sc.stage, sc.remaining
), s AS (
  UPDATE app.job_stages js SET shards_left = js.shards_left - 1
  FROM c
  WHERE c.remaining = 0 AND js.job_id = c.job_id AND js.stage = c.stage
  RETURNING js.shards_left
)
SELECT t.parent_job_id, t.stage, t.job_attempt, t.task_type,
       (SELECT remaining FROM c) AS shard_remaining,
       (SELECT shards_left FROM s) AS shards_left
FROM t
