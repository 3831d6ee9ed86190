-- Cancel and resubmit (engine/control.rs).
-- A resubmit starts a new attempt of a failed or cancelled job from its failed stage (or from
-- stage 1). The previous attempt's tasks of the stages that run again are moved here, whole, as
-- JSON, so the new attempt's fan-in, counts and results see only its own tasks while nothing
-- about the first attempt is lost (its job_events rows are never touched).

CREATE TABLE app.task_archive (
  task_id       VARCHAR(100) NOT NULL,
  parent_job_id VARCHAR(64) NOT NULL REFERENCES app.jobs (job_id) ON DELETE CASCADE,
  job_attempt   INT NOT NULL,
  stage         INT NOT NULL,
  status        VARCHAR(32) NOT NULL,
  task_row      JSONB NOT NULL,
  archived_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (task_id, job_attempt)
);
CREATE INDEX idx_task_archive_job ON app.task_archive (parent_job_id, job_attempt, stage);
