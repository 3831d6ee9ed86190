-- Event counts of a job per (type, status), with the first and last time each was seen.
SELECT event_type, event_status, count(*) AS n, min(created_at) AS first_at, max(created_at) AS last_at
FROM app.job_events
WHERE job_id = $1
GROUP BY event_type, event_status
ORDER BY min(event_id)
