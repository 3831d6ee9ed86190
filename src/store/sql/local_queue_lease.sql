-- Peek-lock up to $2 visible messages of queue $1 (not yet past the max delivery count $4).
UPDATE app.queue_messages m
SET delivery_count = m.delivery_count + 1, lock_token = gen_random_uuid(),
    visible_at = now() + make_interval(secs => $3)
WHERE m.id IN (
  SELECT id FROM app.queue_messages
  WHERE queue = $1 AND visible_at <= now() AND delivery_count < $4
  ORDER BY visible_at, id LIMIT $2
  FOR UPDATE SKIP LOCKED)
RETURNING m.id, m.message_id, m.body, m.properties, m.correlation_id, m.enqueued_at, m.delivery_count,
          m.lock_token, m.dead_letter_source
