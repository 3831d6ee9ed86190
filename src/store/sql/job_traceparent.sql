-- The W3C trace context a job was submitted under (a retry message carries it on).
SELECT traceparent FROM app.jobs WHERE job_id = $1
