-- Retention: batched DELETE on app.job_events as it is, or a table partitioned by day whose old
-- partitions are dropped? Measured on 10 million event rows (docs/performance.md, "Retention").
--
--   createdb ret10m && psql -d ret10m -v ON_ERROR_STOP=1 -f benches/retention_partitioning.sql
--   dropdb ret10m
--
-- History: 5,000 jobs x 2,000 events over 60 days (one job every ~17 minutes, each job's events
-- within the hour before it ended), 1 job in 10 failed. Two copies of job_events with the
-- production columns and indexes (migrations 0001 + 0011): `flat` (one table) and `parted`
-- (range-partitioned by created_at, one partition a day). For each: the hot path (200,000 new
-- events in 200 inserts of 1,000, the shape of event_insert_batch.sql), a job's page of events
-- (the API's events query, 500 random jobs), then retention of the events of completed jobs older
-- than 14 days: `flat` with the janitor's statement (src/store/sql/retention_delete_events.sql:
-- 100 jobs, 5,000 rows a statement, a commit after each), `parted` by dropping the partitions.
\timing off
SET client_min_messages = warning;
DROP TABLE IF EXISTS jobs, flat, parted, results CASCADE;
DROP PROCEDURE IF EXISTS load, hot, page, purge_flat, purge_parted;
CREATE TABLE results (step text, table_name text, ms numeric, rows bigint, note text);

CREATE TABLE jobs (job_id varchar(64) PRIMARY KEY, status text NOT NULL, completed_at timestamptz NOT NULL);
INSERT INTO jobs
SELECT encode(sha256(i::text::bytea), 'hex'), CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END,
       now() - interval '60 days' + (i * interval '60 days' / 5000)
FROM generate_series(1, 5000) i;
CREATE INDEX ON jobs (completed_at);

CREATE TABLE flat (
  event_id bigserial PRIMARY KEY, job_id varchar(64) NOT NULL, task_id varchar(100), stage int,
  attempt int, event_type varchar(50) NOT NULL, event_status varchar(16) NOT NULL,
  checkpoint_name varchar(100), event_data jsonb NOT NULL DEFAULT '{}', error_class varchar(16),
  error_type varchar(100), error_message varchar(1000), duration_ms int,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE parted (LIKE flat INCLUDING DEFAULTS) PARTITION BY RANGE (created_at);
ALTER TABLE parted ALTER COLUMN event_id SET DEFAULT nextval('flat_event_id_seq');
DO $$
DECLARE d date;
BEGIN
  FOR d IN SELECT generate_series((now() - interval '61 days')::date, (now() + interval '2 days')::date, '1 day') LOOP
    EXECUTE format('CREATE TABLE parted_%s PARTITION OF parted FOR VALUES FROM (%L) TO (%L)',
                   to_char(d, 'YYYYMMDD'), d, d + 1);
  END LOOP;
END $$;

CREATE PROCEDURE load(tbl text) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; b int;
BEGIN
  FOR b IN 0..9 LOOP
    t0 := clock_timestamp();
    EXECUTE format($q$
      INSERT INTO %I (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name, event_data, duration_ms, created_at)
      SELECT j.job_id, left(j.job_id, 16) || '-s1-' || n, 1, 1,
             CASE WHEN n %% 2 = 0 THEN 'task_completed' ELSE 'task_claimed' END, 'success',
             CASE WHEN n %% 2 = 0 THEN 'TASK_COMPLETED' ELSE 'TASK_CLAIMED' END,
             '{"worker":"w1"}', n %% 1000, j.completed_at - (2000 - n) * interval '1.8 seconds'
      FROM (SELECT * FROM jobs ORDER BY completed_at OFFSET %s LIMIT 500) j, generate_series(1, 2000) n
      ORDER BY 10$q$, tbl, b * 500);
    COMMIT;
  END LOOP;
END $$;

\echo loading flat (10M rows)
CALL load('flat');
CREATE INDEX flat_job ON flat (job_id, event_id);
CREATE INDEX flat_task ON flat (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX flat_created ON flat (created_at DESC);
\echo loading parted (10M rows)
CALL load('parted');
CREATE INDEX parted_job ON parted (job_id, event_id);
CREATE INDEX parted_task ON parted (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX parted_created ON parted (created_at DESC);
ALTER TABLE parted ADD PRIMARY KEY (event_id, created_at);
VACUUM ANALYZE jobs, flat, parted;
INSERT INTO results SELECT 'rows', 'flat', NULL, count(*), pg_size_pretty(pg_total_relation_size('flat')) FROM flat;
INSERT INTO results SELECT 'rows', 'parted', NULL, count(*),
  pg_size_pretty((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'parted'::regclass)::bigint) FROM parted;

-- The hot path: 200 inserts of 1,000 events each, as event_insert_batch.sql writes them.
CREATE PROCEDURE hot(tbl text) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); i int;
BEGIN
  FOR i IN 1..200 LOOP
    EXECUTE format($q$INSERT INTO %I (job_id, task_id, stage, attempt, event_type, event_status, checkpoint_name, duration_ms)
      SELECT 'hot' || %s, 'hot-task-' || n, 1, 1, 'task_completed', 'success', 'TASK_COMPLETED', 3
      FROM generate_series(1, 1000) n$q$, tbl, i);
    COMMIT;
  END LOOP;
  INSERT INTO results VALUES ('hot path: 200 x 1,000-row inserts', tbl, extract(epoch FROM clock_timestamp() - t0) * 1000, 200000, NULL);
  COMMIT;
END $$;
CALL hot('flat');
CALL hot('parted');
CALL hot('parted'); -- and again in the other order: the machine is shared
CALL hot('flat');

-- A job's first page of events, as the API reads it, for 500 jobs.
CREATE PROCEDURE page(tbl text) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); j record; n bigint := 0; c bigint;
BEGIN
  FOR j IN SELECT job_id FROM jobs ORDER BY md5(job_id) LIMIT 500 LOOP
    EXECUTE format('SELECT count(*) FROM (SELECT * FROM %I WHERE job_id = $1 ORDER BY event_id LIMIT 200) p', tbl)
      INTO c USING j.job_id;
    n := n + c;
  END LOOP;
  INSERT INTO results VALUES ('one job''s page of 200 events x 500 jobs', tbl, extract(epoch FROM clock_timestamp() - t0) * 1000, n, NULL);
END $$;
CALL page('flat');
CALL page('parted');
CALL page('parted');
CALL page('flat');

-- Retention on flat: the janitor's batched statement, 100 jobs at a time, 5,000 rows a batch.
CREATE PROCEDURE purge_flat() LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); tb timestamptz; ids text[]; n bigint; total bigint := 0;
        batches int := 0; worst numeric := 0; ms numeric;
BEGIN
  FOR ids IN SELECT array_agg(job_id) FROM (SELECT job_id, row_number() OVER (ORDER BY completed_at) / 100 AS g
                 FROM jobs WHERE status = 'completed' AND completed_at < now() - interval '14 days') s GROUP BY g ORDER BY g LOOP
    LOOP
      tb := clock_timestamp();
      DELETE FROM flat WHERE event_id IN (SELECT event_id FROM flat WHERE job_id = ANY(ids) LIMIT 5000);
      GET DIAGNOSTICS n = ROW_COUNT;
      COMMIT;
      ms := extract(epoch FROM clock_timestamp() - tb) * 1000;
      worst := greatest(worst, ms);
      batches := batches + 1;
      total := total + n;
      EXIT WHEN n < 5000;
    END LOOP;
  END LOOP;
  INSERT INTO results VALUES ('retention: batched DELETE (5,000 rows a batch)', 'flat', extract(epoch FROM clock_timestamp() - t0) * 1000, total,
    format('%s batches, mean %s ms, worst %s ms', batches, round(extract(epoch FROM clock_timestamp() - t0) * 1000 / greatest(batches, 1), 1), round(worst, 1)));
  COMMIT;
END $$;
\echo purging flat
CALL purge_flat();
INSERT INTO results SELECT 'after purge', 'flat', NULL, count(*), pg_size_pretty(pg_total_relation_size('flat')) || ' before VACUUM' FROM flat;
\timing on
\echo vacuum flat
VACUUM flat;
\timing off
INSERT INTO results SELECT 'after VACUUM', 'flat', NULL, NULL, pg_size_pretty(pg_total_relation_size('flat')) || ' (freed space is reused, not returned)';

-- Retention on parted: detach and drop every partition wholly older than 14 days.
CREATE PROCEDURE purge_parted() LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); p record; n bigint; total bigint := 0; parts int := 0;
        worst numeric := 0; tb timestamptz;
BEGIN
  FOR p IN SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'parted'::regclass ORDER BY c.relname LOOP
    IF to_date(right(p.relname, 8), 'YYYYMMDD') + 1 <= (now() - interval '14 days')::date THEN
      EXECUTE format('SELECT count(*) FROM %I', p.relname) INTO n;
      tb := clock_timestamp();
      EXECUTE format('ALTER TABLE parted DETACH PARTITION %I', p.relname);
      EXECUTE format('DROP TABLE %I', p.relname);
      COMMIT;
      worst := greatest(worst, extract(epoch FROM clock_timestamp() - tb) * 1000);
      total := total + n;
      parts := parts + 1;
    END IF;
  END LOOP;
  INSERT INTO results VALUES ('retention: DETACH + DROP of day partitions', 'parted', extract(epoch FROM clock_timestamp() - t0) * 1000, total,
    format('%s partitions, worst %s ms; takes failed jobs'' events too', parts, round(worst, 1)));
  COMMIT;
END $$;
\echo purging parted
CALL purge_parted();

SELECT step, table_name, round(ms) AS ms, rows, note FROM results;
