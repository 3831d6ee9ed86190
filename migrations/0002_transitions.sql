-- The state machines enforced by the database: a status change not listed here is refused, whatever
-- code issues it. The rows mirror engine/state.rs (a test checks they are equal).

CREATE TABLE app.job_transitions (
  from_status app.job_status NOT NULL,
  to_status   app.job_status NOT NULL,
  PRIMARY KEY (from_status, to_status)
);
INSERT INTO app.job_transitions VALUES
  ('queued', 'processing'), ('processing', 'queued'), ('processing', 'completed'),
  ('processing', 'completed_with_errors'), ('processing', 'failed'), ('queued', 'failed'),
  ('queued', 'cancelled'), ('processing', 'cancelled');

CREATE TABLE app.task_transitions (
  from_status app.task_status NOT NULL,
  to_status   app.task_status NOT NULL,
  PRIMARY KEY (from_status, to_status)
);
INSERT INTO app.task_transitions VALUES
  ('queued', 'processing'), ('processing', 'processing'), ('processing', 'completed'),
  ('processing', 'failed'), ('processing', 'queued'), ('queued', 'cancelled'), ('queued', 'failed');

CREATE FUNCTION app.enforce_job_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM app.job_transitions WHERE from_status = OLD.status AND to_status = NEW.status) THEN
    RETURN NEW;
  END IF;
  -- An explicit resubmit: a failed or cancelled job starts a new attempt.
  IF OLD.status IN ('failed', 'cancelled') AND NEW.status = 'queued' AND NEW.attempt > OLD.attempt THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'job % cannot go from % to %', OLD.job_id, OLD.status, NEW.status
    USING ERRCODE = 'check_violation';
END $$;

CREATE TRIGGER enforce_job_transition BEFORE UPDATE OF status ON app.jobs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION app.enforce_job_transition();

CREATE FUNCTION app.enforce_task_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM app.task_transitions WHERE from_status = OLD.status AND to_status = NEW.status) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'task % cannot go from % to %', OLD.task_id, OLD.status, NEW.status
    USING ERRCODE = 'check_violation';
END $$;

CREATE TRIGGER enforce_task_transition BEFORE UPDATE OF status ON app.tasks
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION app.enforce_task_transition();
