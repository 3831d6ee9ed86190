-- Abandon: visible again at once (Service Bus abandon has no backoff).
UPDATE app.queue_messages SET visible_at = now(), lock_token = NULL
WHERE id = $1 AND lock_token = $2
