INSERT INTO app.outbox (queue, message_id, body, properties, correlation_id, scheduled_at, job_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[], $7::text[])
RETURNING id
