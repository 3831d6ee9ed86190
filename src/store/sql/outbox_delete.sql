DELETE FROM app.outbox WHERE id = ANY($1)
