-- Retry of failed tasks: the tasks of stage $2 that did not complete, in task order, locked (the
-- job row is already locked by the resubmit). `processing` ones make the retry refuse.
SELECT task_id, task_seq, parameters, counter_shard, task_type, status::text
FROM app.tasks
WHERE parent_job_id = $1 AND stage = $2 AND status <> 'completed'
ORDER BY task_seq
FOR UPDATE
