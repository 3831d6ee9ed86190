-- The status of a task's job, share-locked until the end of the transaction: the job cannot fail,
-- finish or be cancelled meanwhile (those take the row's update lock).
SELECT j.status::text
FROM app.jobs j JOIN app.tasks t ON t.parent_job_id = j.job_id
WHERE t.task_id = $1
FOR SHARE OF j
