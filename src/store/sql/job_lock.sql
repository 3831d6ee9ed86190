SELECT status::text, stage FROM app.jobs WHERE job_id = $1 FOR UPDATE
