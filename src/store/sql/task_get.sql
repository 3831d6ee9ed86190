-- One task of job $1 by id ($2): its app.tasks row, or else (a resubmit moved it to the archive)
-- its latest archived row, read back into the app.tasks row type, with `archived_at`.
SELECT * FROM (
  SELECT task_id, parent_job_id, job_type, task_type, stage, task_index, task_seq,
         status::text AS status, parameters, result_data, error_details, error_class, retry_count,
         job_attempt, heartbeat, started_at, completed_at, created_at, updated_at,
         NULL::timestamptz AS archived_at
  FROM app.tasks
  WHERE parent_job_id = $1 AND task_id = $2
  UNION ALL
  (SELECT r.task_id, r.parent_job_id, r.job_type, r.task_type, r.stage, r.task_index, r.task_seq,
          r.status::text, r.parameters, r.result_data, r.error_details, r.error_class, r.retry_count,
          a.job_attempt, r.heartbeat, r.started_at, r.completed_at, r.created_at, r.updated_at,
          a.archived_at
   FROM app.task_archive a
   CROSS JOIN LATERAL jsonb_populate_record(NULL::app.tasks, a.task_row) r
   WHERE a.parent_job_id = $1 AND a.task_id = $2
   ORDER BY a.job_attempt DESC
   LIMIT 1)
) t
ORDER BY archived_at NULLS FIRST
LIMIT 1
