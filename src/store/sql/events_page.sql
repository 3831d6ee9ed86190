-- One page of a job's events, oldest first, after event id $2, optionally of one task ($3), each
-- with the job attempt it belongs to (1, or the attempt of the last job_resubmitted event at or
-- before it; see migration 0014) beside `attempt` (the task's attempt for task events).
WITH b AS (
  SELECT event_id, attempt FROM app.job_events WHERE job_id = $1 AND event_type = 'job_resubmitted'
)
SELECT e.event_id, e.created_at, e.event_type, e.event_status, e.checkpoint_name, e.task_id, e.stage,
       e.attempt, e.duration_ms, e.error_class, e.error_type, e.error_message, e.event_data,
       COALESCE((SELECT max(b.attempt) FROM b WHERE b.event_id <= e.event_id), 1) AS job_attempt
FROM app.job_events e
WHERE e.job_id = $1 AND e.event_id > $2 AND ($3::text IS NULL OR e.task_id = $3)
ORDER BY e.event_id
LIMIT $4
