-- Peek-lock up to $2 visible messages of queue $1 for $3 seconds, in enqueue order (Service Bus
-- delivers by sequence number). A visible message already delivered $4 times (its lock expired,
-- or it was abandoned, at the limit) is not delivered again: it is dead-lettered to queue $5 with
-- the reason, as Service Bus does, in this same statement. The lease changes no indexed column
-- (the queue index is (queue, id); migration 0018), so it is a HOT update. Always one row at
-- least: `dead_lettered` counts the messages moved; `id` is NULL when nothing was leased.
WITH c AS (
  SELECT id, delivery_count >= $4 AS dead FROM app.queue_messages
  WHERE queue = $1 AND visible_at <= now()
  ORDER BY id LIMIT $2
  FOR UPDATE SKIP LOCKED
), dead AS (
  DELETE FROM app.queue_messages m USING c
  WHERE m.id = c.id AND c.dead
  RETURNING m.queue, m.message_id, m.body, m.properties, m.correlation_id, m.delivery_count
), moved AS (
  INSERT INTO app.queue_messages (queue, message_id, body, properties, correlation_id, dead_letter_source)
  SELECT $5, message_id, body,
         properties || jsonb_build_object(
           'DeadLetterReason', 'MaxDeliveryCountExceeded',
           'DeadLetterErrorDescription',
           'Message could not be consumed after ' || delivery_count || ' delivery attempts.'),
         correlation_id, queue
  FROM dead
  ON CONFLICT (queue, message_id) DO NOTHING
  RETURNING id
), l AS (
  UPDATE app.queue_messages m
  SET delivery_count = m.delivery_count + 1, lock_token = gen_random_uuid(),
      visible_at = now() + make_interval(secs => $3)
  FROM c
  WHERE m.id = c.id AND NOT c.dead
  RETURNING m.id, m.message_id, m.body, m.properties, m.correlation_id, m.enqueued_at, m.delivery_count,
            m.lock_token, m.dead_letter_source
)
SELECT l.*, (SELECT count(*) FROM dead) AS dead_lettered
FROM (SELECT 1) AS one LEFT JOIN l ON true
