INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name,
                            event_data, error_class, error_type, error_message, duration_ms)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], $6::text[], $7::text[],
                     $8::jsonb[], $9::text[], $10::text[], $11::text[], $12::int[])
