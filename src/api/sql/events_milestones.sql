-- Where a job stopped: its first failure, and the last successful event before it (the last
-- successful event at all when nothing failed). Tasks that finish after their job failed are
-- recorded later, but they are not how far the job got. kind = 'last_success' | 'first_failure'.
WITH f AS (
  SELECT event_id, created_at, event_type, event_status, checkpoint_name, task_id, stage, attempt,
         duration_ms, error_class, error_type, error_message, event_data
  FROM app.job_events WHERE job_id = $1 AND event_status = 'failure' ORDER BY event_id LIMIT 1
)
(SELECT 'last_success' AS kind, event_id, created_at, event_type, event_status, checkpoint_name, task_id,
        stage, attempt, duration_ms, error_class, error_type, error_message, event_data
 FROM app.job_events
 WHERE job_id = $1 AND event_status = 'success'
   AND event_id < COALESCE((SELECT event_id FROM f), 9223372036854775807)
 ORDER BY event_id DESC LIMIT 1)
UNION ALL
SELECT 'first_failure', * FROM f
