-- [batch] Claims and completions as HOT updates (docs/performance.md, "Batched deliveries").
-- A task row is written three times: inserted by its stage, updated by its claim and by its
-- completion. Both updates change `status` (and the claim `lease_expires_at`), and any index
-- that names a changed column, in its key or its predicate, makes the update write a new entry
-- in EVERY index of the table (15 index entries per task with five indexes). Without an index on
-- those columns the updates stay on their page (fillfactor 70, migration 0016) and write none.
--   idx_tasks_job_stage_status (parent_job_id, stage, status): every per-job or per-stage status
--     query reads through idx_tasks_job_stage (parent_job_id, stage, task_seq) instead, i.e.
--     the rows of that job or stage; they ran at stage ends, job failures and page views.
--   idx_tasks_lease (lease_expires_at) WHERE status = 'processing': the janitor finds expired
--     leases through the jobs that can have them (janitor_expired_leases.sql).
-- And one index no query uses:
--   idx_job_events_created_at (created_at DESC): every events query is per job
--     (idx_job_events_job) or per task (idx_job_events_task); retention deletes by job.
DROP INDEX IF EXISTS app.idx_tasks_job_stage_status;
DROP INDEX IF EXISTS app.idx_tasks_lease;
DROP INDEX IF EXISTS app.idx_job_events_created_at;
