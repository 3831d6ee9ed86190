INSERT INTO app.job_stages (job_id, stage, job_attempt, name, task_type, task_count, shards, shards_left)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
ON CONFLICT (job_id, stage) DO UPDATE
SET job_attempt = EXCLUDED.job_attempt, name = EXCLUDED.name, task_type = EXCLUDED.task_type,
    task_count = EXCLUDED.task_count, shards = EXCLUDED.shards, shards_left = EXCLUDED.shards_left, status = 'running',
    started_at = now(), completed_at = NULL
