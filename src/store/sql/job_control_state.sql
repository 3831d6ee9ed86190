-- Cancel / resubmit: the job's state under its row lock. NO KEY UPDATE, not UPDATE: task claims
-- and completions insert job_events rows whose foreign key takes KEY SHARE on this row while
-- they hold task rows the cancel is about to update; FOR UPDATE would deadlock with them.
SELECT status::text, stage, attempt, error_details, completed_at, total_stages
FROM app.jobs WHERE job_id = $1 FOR NO KEY UPDATE
