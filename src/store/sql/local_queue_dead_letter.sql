-- Messages of queue $1 delivered $2 times without success move to queue $3 with the reason, as
-- Service Bus does when it dead-letters and forwards to the poison queue.
WITH dead AS (
  DELETE FROM app.queue_messages
  WHERE id IN (SELECT id FROM app.queue_messages
               WHERE queue = $1 AND visible_at <= now() AND delivery_count >= $2
               FOR UPDATE SKIP LOCKED)
  RETURNING queue, message_id, body, properties, correlation_id, delivery_count
)
INSERT INTO app.queue_messages (queue, message_id, body, properties, correlation_id, dead_letter_source)
SELECT $3, message_id, body,
       properties || jsonb_build_object(
         'DeadLetterReason', 'MaxDeliveryCountExceeded',
         'DeadLetterErrorDescription',
         'Message could not be consumed after ' || delivery_count || ' delivery attempts.'),
       correlation_id, queue
FROM dead
ON CONFLICT (queue, message_id) DO NOTHING
RETURNING id
