-- Tasks whose worker disappeared: processing with a lease in the past, with the claim's fencing
-- token (the janitor's retry changes nothing if a redelivery took the task over meanwhile).
SELECT t.task_id, t.parent_job_id, t.job_type, t.task_type, t.stage, t.task_seq, t.parameters,
       t.retry_count, t.job_attempt, j.correlation_id, t.claim_token
FROM app.tasks t JOIN app.jobs j ON j.job_id = t.parent_job_id
WHERE t.status = 'processing' AND t.lease_expires_at < now()
ORDER BY t.lease_expires_at LIMIT $1
