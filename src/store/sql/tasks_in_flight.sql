-- Tasks of a job a worker is running right now (their completions are recorded, never advance).
SELECT count(*) FROM app.tasks WHERE parent_job_id = $1 AND status = 'processing'
