-- One page of a job's events, oldest first, after event id $2, optionally of one task ($3).
SELECT event_id, created_at, event_type, event_status, checkpoint_name, task_id, stage, attempt,
       duration_ms, error_class, error_type, error_message, event_data
FROM app.job_events
WHERE job_id = $1 AND event_id > $2 AND ($3::text IS NULL OR task_id = $3)
ORDER BY event_id
LIMIT $4
