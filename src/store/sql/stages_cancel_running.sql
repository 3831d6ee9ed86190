-- Cancel, first statement: close the job's running stage rows. It runs BEFORE the job row is
-- locked because a completing task locks its stage row and then the job row (to advance it);
-- taking them in the same order means a cancel and a last completion never deadlock.
UPDATE app.job_stages SET status = 'cancelled', completed_at = now()
WHERE job_id = $1 AND status = 'running'
