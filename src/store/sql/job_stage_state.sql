SELECT status::text, stage, attempt FROM app.jobs WHERE job_id = $1
