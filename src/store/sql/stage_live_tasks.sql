-- Janitor repair of a stalled stage: how many of its tasks are still queued or processing.
SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND stage = $2 AND status IN ('queued', 'processing')
