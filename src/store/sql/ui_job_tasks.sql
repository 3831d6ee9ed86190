-- The web page's task table of job $1, one page: failures first (failed, cancelled, processing,
-- queued, then completed), each group in stage and task order; optional $2 status and $3 stage;
-- keyset cursor ($4 rank, $5 stage, $6 task_seq of the last row shown); $7 rows at most.
-- A top-N sort over the job's task rows: one scan of the job's index range per page, whatever
-- the page number.
WITH t AS (
  SELECT task_id, stage, task_seq, task_index, task_type, status::text AS status, retry_count,
         error_class, error_details, started_at, completed_at, job_attempt,
         CASE status WHEN 'failed' THEN 0 WHEN 'cancelled' THEN 1 WHEN 'processing' THEN 2
                     WHEN 'queued' THEN 3 ELSE 4 END AS rank
  FROM app.tasks
  WHERE parent_job_id = $1
    AND ($2::text IS NULL OR status = $2::text::app.task_status)
    AND ($3::int IS NULL OR stage = $3::int)
)
SELECT task_id, stage, task_seq, task_index, task_type, status, retry_count, error_class,
       left(error_details, 1000) AS error_details, started_at, completed_at,
       (extract(epoch FROM completed_at - started_at) * 1000)::bigint AS duration_ms, job_attempt, rank
FROM t
WHERE $4::int IS NULL OR (rank, stage, task_seq) > ($4::int, $5::int, $6::int)
ORDER BY rank, stage, task_seq
LIMIT $7
