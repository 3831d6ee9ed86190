-- The started stages of a job with their task counts by status and retries.
SELECT s.stage, s.name, s.task_type, s.status, s.started_at, s.completed_at, s.task_count,
       COALESCE((SELECT jsonb_object_agg(c.status, c.n)
                 FROM (SELECT t.status::text AS status, count(*) AS n FROM app.tasks t
                       WHERE t.parent_job_id = s.job_id AND t.stage = s.stage GROUP BY t.status) c),
                '{}'::jsonb) AS task_counts,
       (SELECT COALESCE(sum(t.retry_count), 0)::bigint FROM app.tasks t
        WHERE t.parent_job_id = s.job_id AND t.stage = s.stage) AS retries
FROM app.job_stages s
WHERE s.job_id = $1
ORDER BY s.stage
