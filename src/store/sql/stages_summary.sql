SELECT s.stage, s.name, s.task_count,
       (SELECT count(*) FROM app.tasks t WHERE t.parent_job_id = s.job_id AND t.stage = s.stage AND t.status = 'completed'),
       (SELECT count(*) FROM app.tasks t WHERE t.parent_job_id = s.job_id AND t.stage = s.stage AND t.status = 'failed')
FROM app.job_stages s WHERE s.job_id = $1 ORDER BY s.stage
