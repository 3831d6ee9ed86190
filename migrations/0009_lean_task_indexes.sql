-- Fewer index entries on the task hot path. Every claim and every completion of a task writes a
-- new row version with a new entry in each of its indexes (status is indexed, so the update is
-- never HOT). Two of them only repeat others:
--   idx_tasks_parent_job_id (parent_job_id) is the leading column of idx_tasks_job_stage and of
--     idx_tasks_job_stage_status, which serve every lookup by job;
--   idx_tasks_status (status alone, a handful of values over millions of rows) serves no query:
--     the janitor's lease scan uses the partial idx_tasks_lease, per-job scans the job indexes.
-- Measured in docs/performance.md.
DROP INDEX IF EXISTS app.idx_tasks_parent_job_id;
DROP INDEX IF EXISTS app.idx_tasks_status;
