-- CoreMachine schema, version 1.
-- Compatible with the earlier implementation's app.jobs / app.tasks (same table, column and status
-- names for everything they shared); CoreMachine's additions are marked. Timestamps are timestamptz
-- (the earlier TIMESTAMP columns were written as UTC; timestamptz removes that ambiguity).

CREATE SCHEMA IF NOT EXISTS app;

CREATE TYPE app.job_status AS ENUM
  ('queued', 'processing', 'completed', 'failed', 'completed_with_errors', 'cancelled');
CREATE TYPE app.task_status AS ENUM
  ('queued', 'processing', 'completed', 'failed', 'retrying', 'pending_retry', 'cancelled');

CREATE FUNCTION app.update_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at = now();
  RETURN NEW;
END $$;

CREATE TABLE app.jobs (
  job_id         VARCHAR(64) PRIMARY KEY CHECK (job_id ~ '^[0-9a-f]{64}$'),
  job_type       VARCHAR(100) NOT NULL,
  parameters     JSONB NOT NULL DEFAULT '{}',
  status         app.job_status NOT NULL DEFAULT 'queued',
  stage          INT NOT NULL DEFAULT 1 CHECK (stage >= 1),
  total_stages   INT NOT NULL DEFAULT 1 CHECK (total_stages >= 1),
  stage_results  JSONB NOT NULL DEFAULT '{}',
  metadata       JSONB NOT NULL DEFAULT '{}',
  result_data    JSONB,
  error_details  VARCHAR,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- CoreMachine additions
  attempt        INT NOT NULL DEFAULT 1 CHECK (attempt >= 1),
  correlation_id VARCHAR(64),
  traceparent    VARCHAR(64),
  completed_at   TIMESTAMPTZ,
  -- a terminal status always carries its completion time, and only a terminal status does
  CONSTRAINT jobs_terminal_has_completed_at CHECK (
    (status IN ('completed', 'failed', 'completed_with_errors', 'cancelled')) = (completed_at IS NOT NULL))
);
CREATE INDEX idx_jobs_status ON app.jobs (status);
CREATE INDEX idx_jobs_job_type ON app.jobs (job_type);
CREATE INDEX idx_jobs_created_at ON app.jobs (created_at DESC, job_id DESC);
CREATE INDEX idx_jobs_updated_at ON app.jobs (updated_at);
CREATE TRIGGER update_jobs_updated_at BEFORE UPDATE ON app.jobs
  FOR EACH ROW EXECUTE FUNCTION app.update_updated_at_column();

CREATE TABLE app.tasks (
  task_id           VARCHAR(100) PRIMARY KEY,
  parent_job_id     VARCHAR(64) NOT NULL REFERENCES app.jobs (job_id) ON DELETE CASCADE,
  job_type          VARCHAR(100) NOT NULL,
  task_type         VARCHAR(100) NOT NULL,
  stage             INT NOT NULL,
  task_index        VARCHAR(50) NOT NULL DEFAULT '0',
  parameters        JSONB NOT NULL DEFAULT '{}',
  status            app.task_status NOT NULL DEFAULT 'queued',
  result_data       JSONB,
  metadata          JSONB NOT NULL DEFAULT '{}',
  error_details     VARCHAR,
  retry_count       INT NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
  heartbeat         TIMESTAMPTZ,
  next_stage_params JSONB,
  created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- CoreMachine additions
  task_seq          INT NOT NULL,          -- numeric position in the stage (task_index is text)
  counter_shard     SMALLINT NOT NULL DEFAULT 0,
  job_attempt       INT NOT NULL DEFAULT 1,
  error_class       VARCHAR(16) CHECK (error_class IN ('transient', 'permanent')),
  lease_expires_at  TIMESTAMPTZ,
  started_at        TIMESTAMPTZ,
  completed_at      TIMESTAMPTZ,
  CONSTRAINT tasks_processing_has_lease CHECK ((status = 'processing') = (lease_expires_at IS NOT NULL))
);
CREATE INDEX idx_tasks_parent_job_id ON app.tasks (parent_job_id);
CREATE INDEX idx_tasks_status ON app.tasks (status);
CREATE INDEX idx_tasks_job_stage ON app.tasks (parent_job_id, stage, task_seq);
CREATE INDEX idx_tasks_job_stage_status ON app.tasks (parent_job_id, stage, status);
CREATE INDEX idx_tasks_heartbeat ON app.tasks (heartbeat) WHERE heartbeat IS NOT NULL;
CREATE INDEX idx_tasks_retry_count ON app.tasks (retry_count) WHERE retry_count > 0;
CREATE INDEX idx_tasks_lease ON app.tasks (lease_expires_at) WHERE status = 'processing';
CREATE TRIGGER update_tasks_updated_at BEFORE UPDATE ON app.tasks
  FOR EACH ROW EXECUTE FUNCTION app.update_updated_at_column();

-- One row per (job, stage): when it started, how many tasks, how it ended.
CREATE TABLE app.job_stages (
  job_id        VARCHAR(64) NOT NULL REFERENCES app.jobs (job_id) ON DELETE CASCADE,
  stage         INT NOT NULL,
  job_attempt   INT NOT NULL DEFAULT 1,
  name          VARCHAR(100) NOT NULL,
  task_type     VARCHAR(100) NOT NULL,
  task_count    INT NOT NULL,
  shards        SMALLINT NOT NULL,
  shards_left   SMALLINT NOT NULL CHECK (shards_left >= 0),   -- counter shards not yet at zero
  status        VARCHAR(16) NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
  started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed_at  TIMESTAMPTZ,
  PRIMARY KEY (job_id, stage)
);

-- The fan-in counter, split into shards so that concurrent completions do not all decrement one row.
-- Exactly one completion observes the sum reaching zero (see engine/fan_in.rs).
CREATE TABLE app.stage_counters (
  job_id     VARCHAR(64) NOT NULL,
  stage      INT NOT NULL,
  shard      SMALLINT NOT NULL,
  remaining  INT NOT NULL CHECK (remaining >= 0),
  total      INT NOT NULL,
  PRIMARY KEY (job_id, stage, shard),
  FOREIGN KEY (job_id, stage) REFERENCES app.job_stages (job_id, stage) ON DELETE CASCADE
);

CREATE TABLE app.job_events (
  event_id        BIGSERIAL PRIMARY KEY,
  job_id          VARCHAR(64) NOT NULL REFERENCES app.jobs (job_id) ON DELETE CASCADE,
  task_id         VARCHAR(100),
  stage           INT,
  attempt         INT,
  event_type      VARCHAR(50) NOT NULL,
  event_status    VARCHAR(16) NOT NULL
                  CHECK (event_status IN ('success', 'failure', 'warning', 'info', 'pending')),
  checkpoint_name VARCHAR(100),
  event_data      JSONB NOT NULL DEFAULT '{}',
  error_class     VARCHAR(16),
  error_type      VARCHAR(100),
  error_message   VARCHAR(1000),
  duration_ms     INT,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX idx_job_events_job ON app.job_events (job_id, event_id);
CREATE INDEX idx_job_events_task ON app.job_events (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX idx_job_events_type ON app.job_events (event_type);
CREATE INDEX idx_job_events_checkpoint ON app.job_events (checkpoint_name) WHERE checkpoint_name IS NOT NULL;
CREATE INDEX idx_job_events_created_at ON app.job_events (created_at DESC);

-- Transactional outbox: messages written in the same transaction as the state change that causes
-- them, published after commit, deleted once the transport accepted them.
CREATE TABLE app.outbox (
  id             BIGSERIAL PRIMARY KEY,
  queue          VARCHAR(100) NOT NULL,
  message_id     VARCHAR(128) NOT NULL,
  body           TEXT NOT NULL,
  properties     JSONB NOT NULL DEFAULT '{}',
  correlation_id VARCHAR(64),
  scheduled_at   TIMESTAMPTZ,
  job_id         VARCHAR(64),
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  attempts       INT NOT NULL DEFAULT 0,
  last_error     TEXT
);
CREATE INDEX idx_outbox_created_at ON app.outbox (created_at);

-- Local-mode queues (Service Bus stand-in) with peek-lock semantics. visible_at is both the
-- scheduled delivery time and, while a message is locked, the lock expiry.
CREATE TABLE app.queue_messages (
  id             BIGSERIAL PRIMARY KEY,
  queue          VARCHAR(100) NOT NULL,
  message_id     VARCHAR(128) NOT NULL,
  body           TEXT NOT NULL,
  properties     JSONB NOT NULL DEFAULT '{}',
  correlation_id VARCHAR(64),
  enqueued_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  visible_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  delivery_count INT NOT NULL DEFAULT 0,
  lock_token     UUID,
  dead_letter_source VARCHAR(100)
);
CREATE UNIQUE INDEX idx_queue_messages_dedup ON app.queue_messages (queue, message_id);
CREATE INDEX idx_queue_messages_ready ON app.queue_messages (queue, visible_at, id);

-- Messages that could not be processed (malformed, unknown job or task): recorded, never lost.
CREATE TABLE app.message_failures (
  id             BIGSERIAL PRIMARY KEY,
  function_name  VARCHAR(100) NOT NULL,
  message_id     VARCHAR(128),
  delivery_count INT,
  job_id         VARCHAR(64),
  task_id        VARCHAR(100),
  reason         VARCHAR(50) NOT NULL,
  error_message  TEXT NOT NULL,
  raw_excerpt    TEXT NOT NULL,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_message_failures_job ON app.message_failures (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE app.janitor_runs (
  run_id        VARCHAR(64) PRIMARY KEY,
  run_type      VARCHAR(50) NOT NULL,
  started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed_at  TIMESTAMPTZ,
  duration_ms   INT,
  status        VARCHAR(20) NOT NULL DEFAULT 'running',
  items_scanned INT NOT NULL DEFAULT 0,
  items_fixed   INT NOT NULL DEFAULT 0,
  actions_taken JSONB NOT NULL DEFAULT '[]',
  error_details VARCHAR
);
CREATE INDEX idx_janitor_runs_started_at ON app.janitor_runs (started_at DESC);
CREATE INDEX idx_janitor_runs_type ON app.janitor_runs (run_type);
