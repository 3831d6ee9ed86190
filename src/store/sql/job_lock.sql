-- The job row under its update lock (janitor repairs). NO KEY UPDATE, not UPDATE: claims and event
-- inserts hold the row FOR KEY SHARE (foreign keys) while they hold task rows, and FOR UPDATE would
-- wait for them while they wait for us.
SELECT status::text, stage FROM app.jobs WHERE job_id = $1 FOR NO KEY UPDATE
