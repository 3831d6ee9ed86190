-- When a job ends early: its queued tasks will never run. Rows another transaction holds are
-- skipped, not waited for: they are being claimed or ended right now (a claim commits them as
-- processing, and their completion is then recorded without advancing the job), and waiting for
-- them here, while this transaction holds the job's counter and stage rows, is a lock-order cycle
-- with that completion. A queued task whose message arrives after its job stopped is cancelled
-- then (engine/task_message.rs).
UPDATE app.tasks SET status = 'cancelled', completed_at = now()
WHERE task_id IN (SELECT task_id FROM app.tasks
                  WHERE parent_job_id = $1 AND status = 'queued'
                  FOR UPDATE SKIP LOCKED)
  AND status = 'queued'
