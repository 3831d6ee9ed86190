-- Retention (src/retention.rs, docs/operations.md "Retention"). The janitor deletes finished jobs
-- after RETENTION_COMPLETED_DAYS / RETENTION_FAILED_DAYS and the events of completed jobs after
-- RETENTION_EVENTS_DAYS, in bounded batches.

-- When the events of a completed job were deleted (the job row and its tasks stay until the job
-- itself expires). NULL: the events are still there. It keeps the next run from looking at the
-- same jobs again.
ALTER TABLE app.jobs ADD COLUMN IF NOT EXISTS events_purged_at TIMESTAMPTZ;

-- Finished jobs by age, for both rules: the partial indexes hold only terminal jobs, so the hot
-- path's updates of running jobs never write them.
CREATE INDEX IF NOT EXISTS idx_jobs_retention ON app.jobs (completed_at)
  WHERE completed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_jobs_events_retention ON app.jobs (completed_at)
  WHERE events_purged_at IS NULL AND status IN ('completed', 'completed_with_errors');

-- Whether a job is past its retention: completed (and completed_with_errors) jobs
-- `completed_secs` after completion, failed and cancelled ones `failed_secs` after (NULL: never).
-- Every retention statement asks it, so a job resubmitted since it was picked keeps its rows.
CREATE FUNCTION app.past_retention(status app.job_status, completed_at timestamptz,
                                   completed_secs float8, failed_secs float8)
RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT completed_at IS NOT NULL
     AND ((status IN ('completed', 'completed_with_errors')
           AND completed_at < now() - make_interval(secs => completed_secs))
       OR (status IN ('failed', 'cancelled')
           AND completed_at < now() - make_interval(secs => failed_secs)))
$$;
