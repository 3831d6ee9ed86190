-- A generated history for measuring `coremachine purge` and the hot path during it
-- (docs/performance.md, "Retention"): 1,000 jobs of 1,000 tasks and 2,000 events each (2 million
-- events, 1 million tasks), in a database migrated by `coremachine migrate`:
--   8 jobs in 10 completed 40 days ago (past RETENTION_COMPLETED_DAYS=30: deleted whole),
--   1 in 10 completed 5 days ago and 1 in 10 failed 40 days ago (kept).
--
--   createdb ret2m && DATABASE_URL=postgres://…/ret2m coremachine migrate
--   psql -d ret2m -f benches/retention_history.sql
SET client_min_messages = warning;
CREATE TEMP TABLE gen AS
SELECT lpad(to_hex(i), 64, '0')::varchar(64) AS job_id,
       CASE WHEN i % 10 = 8 THEN 'completed' WHEN i % 10 = 9 THEN 'failed' ELSE 'completed' END AS status,
       CASE WHEN i % 10 = 8 THEN 5 ELSE 40 END AS days
FROM generate_series(1, 1000) i;
INSERT INTO app.jobs (job_id, job_type, status, created_at, completed_at)
SELECT job_id, 'noop_fanout', status::app.job_status, now() - (days + 1) * interval '1 day',
       now() - days * interval '1 day'
FROM gen;
INSERT INTO app.job_stages (job_id, stage, name, task_type, task_count, shards, shards_left, status)
SELECT job_id, 1, 'fan_out', 'noop', 1000, 1, 0, 'completed' FROM gen;
INSERT INTO app.stage_counters (job_id, stage, shard, remaining, total)
SELECT job_id, 1, 0, 0, 1000 FROM gen;
INSERT INTO app.tasks (task_id, parent_job_id, job_type, task_type, stage, task_seq, status,
                       result_data, created_at, completed_at)
SELECT encode(sha256((g.job_id || n)::bytea), 'hex'), g.job_id, 'noop_fanout', 'noop', 1, n,
       'completed', '{"ok": true}', now() - (g.days + 1) * interval '1 day', now() - g.days * interval '1 day'
FROM gen g, generate_series(1, 1000) n;
INSERT INTO app.job_events (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name,
                            duration_ms, created_at)
SELECT g.job_id, encode(sha256((g.job_id || (n / 2 + 1))::bytea), 'hex'), 1, 1,
       CASE WHEN n % 2 = 0 THEN 'task_claimed' ELSE 'task_completed' END, 'success',
       CASE WHEN n % 2 = 0 THEN 'TASK_CLAIMED' ELSE 'TASK_COMPLETED' END, 3,
       now() - g.days * interval '1 day' - n * interval '1 second'
FROM gen g, generate_series(0, 1999) n;
VACUUM ANALYZE app.jobs, app.tasks, app.job_events;
SELECT (SELECT count(*) FROM app.jobs) AS jobs, (SELECT count(*) FROM app.tasks) AS tasks,
       (SELECT count(*) FROM app.job_events) AS events,
       pg_size_pretty(pg_database_size(current_database())) AS size;
