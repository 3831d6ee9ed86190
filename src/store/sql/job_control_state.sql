-- Cancel / resubmit: the job's state under its row lock.
SELECT status::text, stage, attempt, error_details, completed_at, total_stages
FROM app.jobs WHERE job_id = $1 FOR UPDATE
