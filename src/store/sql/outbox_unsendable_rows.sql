-- Outbox rows whose send the broker refused for good, locked while their jobs are failed.
SELECT id, job_id, queue, message_id, left(body, 1000) AS body_head
FROM app.outbox
WHERE id = ANY($1)
ORDER BY id
FOR UPDATE SKIP LOCKED
