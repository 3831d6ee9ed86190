-- Settle successfully delivered messages (only while the caller still holds the lock).
DELETE FROM app.queue_messages m
USING unnest($1::bigint[], $2::uuid[]) AS u(id, lock_token)
WHERE m.id = u.id AND m.lock_token = u.lock_token
