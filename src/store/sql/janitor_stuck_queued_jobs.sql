-- Queued jobs untouched for a while with no message waiting in the outbox: their stage message was lost.
SELECT j.job_id, j.job_type, j.parameters, j.stage, j.attempt, j.correlation_id, j.traceparent,
       (SELECT count(*) FROM app.job_events e WHERE e.job_id = j.job_id AND e.event_type = 'job_redriven'
          AND e.stage = j.stage AND e.attempt = j.attempt) AS redrives
FROM app.jobs j
WHERE j.status = 'queued' AND j.updated_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM app.outbox o WHERE o.job_id = j.job_id)
LIMIT $2
