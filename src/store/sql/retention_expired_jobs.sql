-- Finished jobs past their retention ($1 completed, $2 failed: seconds, NULL = kept), oldest
-- first. idx_jobs_retention.
SELECT job_id, status::text
FROM app.jobs
WHERE completed_at IS NOT NULL AND app.past_retention(status, completed_at, $1, $2)
ORDER BY completed_at
LIMIT $3
