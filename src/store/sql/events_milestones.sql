-- Where the job's current attempt stopped: its first failure, and the last successful event before
-- it (the last successful event at all when nothing failed), both at or after the attempt's
-- job_resubmitted event (attempt 1: from the start). Tasks that finish after their job failed are
-- recorded later, but they are not how far the job got. kind = 'last_success' | 'first_failure'.
WITH a AS (
  SELECT COALESCE(max(event_id), 0) AS since, COALESCE(max(attempt), 1) AS job_attempt
  FROM app.job_events WHERE job_id = $1 AND event_type = 'job_resubmitted'
), f AS (
  SELECT event_id, created_at, event_type, event_status, checkpoint_name, task_id, stage, attempt,
         duration_ms, error_class, error_type, error_message, event_data, a.job_attempt
  FROM app.job_events, a
  WHERE job_id = $1 AND event_status = 'failure' AND event_id >= a.since
  ORDER BY event_id LIMIT 1
)
(SELECT 'last_success' AS kind, event_id, created_at, event_type, event_status, checkpoint_name, task_id,
        stage, attempt, duration_ms, error_class, error_type, error_message, event_data, a.job_attempt
 FROM app.job_events, a
 WHERE job_id = $1 AND event_status = 'success' AND event_id >= a.since
   AND event_id < COALESCE((SELECT event_id FROM f), 9223372036854775807)
 ORDER BY event_id DESC LIMIT 1)
UNION ALL
SELECT 'first_failure', * FROM f
