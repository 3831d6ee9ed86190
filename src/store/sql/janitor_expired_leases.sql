-- Tasks whose worker disappeared: processing with a lease in the past, with the claim's fencing
-- token (the janitor's retry changes nothing if a redelivery took the task over meanwhile).
-- Found through their jobs (tasks have no index on status or lease, so that claims and
-- completions are HOT updates, migration 0017): the tasks of processing jobs, and of jobs that
-- changed in the last day (a task still processing when its job failed or was cancelled).
SELECT t.task_id, t.parent_job_id, t.job_type, t.task_type, t.stage, t.task_seq, t.parameters,
       t.retry_count, t.job_attempt, j.correlation_id, t.claim_token
FROM app.jobs j JOIN app.tasks t ON t.parent_job_id = j.job_id
WHERE (j.status = 'processing' OR j.updated_at > now() - interval '1 day')
  AND t.status = 'processing' AND t.lease_expires_at < now()
ORDER BY t.lease_expires_at LIMIT $1
