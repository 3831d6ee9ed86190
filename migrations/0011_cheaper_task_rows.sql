-- Cheaper rows on the task hot path (docs/performance.md, "Cheaper rows"). Every task writes two
-- task row versions (claim, completion) and two job_events rows; each cost more than it needed.

-- 1. The transition check ran a PL/pgSQL function with an EXISTS query on every status change of
--    every task (0.06-0.07 ms of a 0.3 ms claim). The allowed pairs now sit in the trigger's WHEN
--    clause, generated here from app.task_transitions, so an allowed change never calls the
--    function; a refused one still does and raises the same error. The table stays the source of
--    truth (tests compare it with engine/state.rs); a migration that changes it must re-run this
--    block.
DO $$
DECLARE
  allowed text;
BEGIN
  SELECT string_agg(format('(%L::app.task_status, %L::app.task_status)', from_status, to_status), ', '
                    ORDER BY from_status, to_status)
    INTO allowed FROM app.task_transitions;
  DROP TRIGGER enforce_task_transition ON app.tasks;
  EXECUTE format(
    'CREATE TRIGGER enforce_task_transition BEFORE UPDATE OF status ON app.tasks FOR EACH ROW '
    'WHEN (OLD.status IS DISTINCT FROM NEW.status AND (OLD.status, NEW.status) NOT IN (%s)) '
    'EXECUTE FUNCTION app.enforce_task_transition()', allowed);
END $$;

-- 2. Every job_events insert checked its foreign key to app.jobs: a query and a KEY SHARE lock on
--    the one job row, taken by every event of every task of the job at once (multixacts), 0.05 ms
--    of a 0.3 ms claim. Events are written only by the engine, in the transaction that changes
--    the job or one of its tasks, and jobs are never deleted (the admin redeploy drops the whole
--    schema), so the key could never be violated and its ON DELETE CASCADE never ran.
ALTER TABLE app.job_events DROP CONSTRAINT IF EXISTS job_events_job_id_fkey;

-- 3. Indexes no query uses, each written twice per task:
--    idx_tasks_heartbeat: the janitor finds lost workers by lease (idx_tasks_lease);
--    idx_job_events_checkpoint, idx_job_events_type: every event query is by job
--    (idx_job_events_job); the time index (operators' "last hour") and the task index stay.
DROP INDEX IF EXISTS app.idx_tasks_heartbeat;
DROP INDEX IF EXISTS app.idx_job_events_checkpoint;
DROP INDEX IF EXISTS app.idx_job_events_type;
