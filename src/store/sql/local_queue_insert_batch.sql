-- Local mode: messages written straight into the queue table inside the transaction that causes
-- them (the queue lives in the same database, so this is as atomic as the outbox and saves moving
-- every row a second time). Duplicate MessageIds are dropped, as Service Bus duplicate detection would.
INSERT INTO app.queue_messages (queue, message_id, body, properties, correlation_id, visible_at)
SELECT q, m, b, p, c, COALESCE(v, now())
FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[]) AS u(q, m, b, p, c, v)
ON CONFLICT (queue, message_id) DO NOTHING
