-- Completed jobs whose events are past their retention ($1 seconds after completion) and still
-- there, oldest first. idx_jobs_events_retention.
SELECT job_id
FROM app.jobs
WHERE events_purged_at IS NULL
  AND status IN ('completed', 'completed_with_errors')
  AND completed_at < now() - make_interval(secs => $1::float8)
ORDER BY completed_at
LIMIT $2
