-- Task counts of one stage, computed once when the stage ends.
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
FROM app.tasks WHERE parent_job_id = $1 AND stage = $2
