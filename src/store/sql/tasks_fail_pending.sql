-- Poison: the job's tasks that never ran (except $3, the poisoned one) are failed with the reason.
UPDATE app.tasks SET status = 'failed', error_details = $2, error_class = 'permanent', completed_at = now()
WHERE parent_job_id = $1 AND status = 'queued' AND task_id IS DISTINCT FROM $3
