-- Retry of failed tasks: the stage runs again for attempt $5 with only the re-queued tasks left
-- on its fan-in counter: each shard's remaining is the number of its re-queued tasks ($3 shards,
-- $4 counts; shards not listed: 0), and shards_left counts the shards that have any. The kept
-- completed tasks are not counted again.
WITH n AS (
  SELECT u.shard, u.n FROM unnest($3::smallint[], $4::int[]) AS u(shard, n)
), c AS (
  UPDATE app.stage_counters sc SET remaining = COALESCE((SELECT n.n FROM n WHERE n.shard = sc.shard), 0)
  WHERE sc.job_id = $1 AND sc.stage = $2
  RETURNING sc.shard
)
UPDATE app.job_stages
SET status = 'running', completed_at = NULL, job_attempt = $5,
    shards_left = (SELECT count(*) FROM n WHERE n.n > 0)
WHERE job_id = $1 AND stage = $2
RETURNING name, task_type, task_count
