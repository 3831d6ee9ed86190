-- The web page's task totals of job $1 by stage and status (the table's "n of total" and filter).
SELECT stage, status::text AS status, count(*) AS n
FROM app.tasks WHERE parent_job_id = $1
GROUP BY stage, status
ORDER BY stage, status
