-- What retention would delete now ($1 completed, $2 failed, $3 events: seconds, NULL = keep):
-- jobs by status, their tasks, archived tasks and events, and the events of completed jobs that
-- stay. For `coremachine purge --dry-run`.
WITH expired AS (
  SELECT job_id, status, completed_at FROM app.jobs
  WHERE completed_at IS NOT NULL AND app.past_retention(status, completed_at, $1, $2)
),
event_jobs AS (
  SELECT job_id FROM app.jobs
  WHERE events_purged_at IS NULL
    AND status IN ('completed', 'completed_with_errors')
    AND completed_at < now() - make_interval(secs => $3::float8)
    AND job_id NOT IN (SELECT job_id FROM expired)
)
SELECT
  (SELECT count(*) FROM expired WHERE status IN ('completed', 'completed_with_errors')) AS completed_jobs,
  (SELECT count(*) FROM expired WHERE status IN ('failed', 'cancelled')) AS failed_jobs,
  (SELECT count(*) FROM app.tasks WHERE parent_job_id IN (SELECT job_id FROM expired)) AS tasks,
  (SELECT count(*) FROM app.task_archive WHERE parent_job_id IN (SELECT job_id FROM expired)) AS archived_tasks,
  (SELECT count(*) FROM app.job_events WHERE job_id IN (SELECT job_id FROM expired)) AS events_of_deleted_jobs,
  (SELECT count(*) FROM event_jobs) AS jobs_losing_events,
  (SELECT count(*) FROM app.job_events WHERE job_id IN (SELECT job_id FROM event_jobs)) AS events_of_kept_jobs,
  (SELECT min(completed_at) FROM expired) AS oldest
