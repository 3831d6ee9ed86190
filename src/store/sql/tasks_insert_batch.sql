-- Create a stage's tasks in one statement.
INSERT INTO app.tasks (task_id, parent_job_id, job_type, task_type, stage, task_index, task_seq,
                       parameters, counter_shard, job_attempt, status)
SELECT u.task_id, $1, $2, $3, $4, u.task_seq::text, u.task_seq, u.parameters, u.shard, $5, 'queued'
FROM unnest($6::text[], $7::int[], $8::jsonb[], $9::smallint[]) AS u(task_id, task_seq, parameters, shard)
ON CONFLICT (task_id) DO NOTHING
