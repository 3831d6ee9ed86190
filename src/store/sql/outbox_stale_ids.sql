SELECT id FROM app.outbox WHERE created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2
