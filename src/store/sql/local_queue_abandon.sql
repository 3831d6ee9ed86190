-- Abandon delivered messages ($1 ids, $2 their lock tokens): visible again at once (Service Bus
-- abandon has no backoff), only while the caller still holds each lock. One statement per batch.
UPDATE app.queue_messages m SET visible_at = now(), lock_token = NULL
FROM unnest($1::bigint[], $2::uuid[]) AS u(id, lock_token)
WHERE m.id = u.id AND m.lock_token = u.lock_token
