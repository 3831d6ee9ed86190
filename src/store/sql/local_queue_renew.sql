-- Renew the locks of messages whose invocation is still running ($1 ids, $2 lock tokens) for
-- another lock duration ($3 seconds), as the host's auto lock renewal does. A lock that was lost
-- meanwhile (expired and leased again: another token) is not touched.
UPDATE app.queue_messages m SET visible_at = now() + make_interval(secs => $3)
FROM unnest($1::bigint[], $2::uuid[]) AS u(id, lock_token)
WHERE m.id = u.id AND m.lock_token = u.lock_token
