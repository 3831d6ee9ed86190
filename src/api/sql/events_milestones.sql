-- The last successful event and the first failure of a job (kind = 'last_success' | 'first_failure').
(SELECT 'last_success' AS kind, event_id, created_at, event_type, event_status, checkpoint_name, task_id,
        stage, attempt, duration_ms, error_class, error_type, error_message, event_data
 FROM app.job_events WHERE job_id = $1 AND event_status = 'success' ORDER BY event_id DESC LIMIT 1)
UNION ALL
(SELECT 'first_failure' AS kind, event_id, created_at, event_type, event_status, checkpoint_name, task_id,
        stage, attempt, duration_ms, error_class, error_type, error_message, event_data
 FROM app.job_events WHERE job_id = $1 AND event_status = 'failure' ORDER BY event_id LIMIT 1)
