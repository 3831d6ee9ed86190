-- A job message that started nothing: where the job is, to tell a stale copy from an impossible one.
SELECT status::text, stage, attempt, total_stages, job_type FROM app.jobs WHERE job_id = $1
