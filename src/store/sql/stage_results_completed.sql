-- Completed results of a stage in task order (input of the next stage or of finalize).
SELECT task_id, task_seq, COALESCE(result_data, 'null'::jsonb) FROM app.tasks
WHERE parent_job_id = $1 AND stage = $2 AND status = 'completed'
ORDER BY task_seq
