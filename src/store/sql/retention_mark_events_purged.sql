-- Completed jobs of $1 whose events are all gone: recorded, so the next run skips them.
UPDATE app.jobs SET events_purged_at = now()
WHERE job_id = ANY($1::text[])
  AND status IN ('completed', 'completed_with_errors')
  AND events_purged_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM app.job_events e WHERE e.job_id = jobs.job_id)
