-- Local mode publish: move outbox rows into the queue table atomically (duplicate MessageIds dropped,
-- as Service Bus duplicate detection would).
WITH moved AS (
  DELETE FROM app.outbox WHERE id = ANY($1)
  RETURNING queue, message_id, body, properties, correlation_id, COALESCE(scheduled_at, now()) AS visible_at
)
INSERT INTO app.queue_messages (queue, message_id, body, properties, correlation_id, visible_at)
SELECT queue, message_id, body, properties, correlation_id, visible_at FROM moved
ON CONFLICT (queue, message_id) DO NOTHING
