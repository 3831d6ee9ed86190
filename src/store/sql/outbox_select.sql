SELECT id, queue, message_id, body, properties, correlation_id, scheduled_at, job_id
FROM app.outbox WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED
