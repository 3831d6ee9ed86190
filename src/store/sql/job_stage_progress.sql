-- Per-stage task counts of a job's current tasks, with the stage rows.
SELECT s.stage, s.name, s.task_type, s.status, s.task_count, s.job_attempt, s.started_at, s.completed_at,
       count(t.task_id) FILTER (WHERE t.status = 'queued') AS queued,
       count(t.task_id) FILTER (WHERE t.status = 'processing') AS processing,
       count(t.task_id) FILTER (WHERE t.status = 'completed') AS completed,
       count(t.task_id) FILTER (WHERE t.status = 'failed') AS failed,
       count(t.task_id) FILTER (WHERE t.status = 'cancelled') AS cancelled
FROM app.job_stages s
LEFT JOIN app.tasks t ON t.parent_job_id = s.job_id AND t.stage = s.stage
WHERE s.job_id = $1
GROUP BY s.stage, s.name, s.task_type, s.status, s.task_count, s.job_attempt, s.started_at, s.completed_at
ORDER BY s.stage
