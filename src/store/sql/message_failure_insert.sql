INSERT INTO app.message_failures (function_name, message_id, delivery_count, job_id, task_id, reason,
                                  error_message, raw_excerpt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id
