-- The web page's job list, newest first: optional status ($1), job type ($2), job id prefix ($3,
-- lower-case hex), created at or after $4 and before $5; keyset cursor ($6 created_at, $7 job_id
-- of the last row shown); $8 rows at most. Progress comes from the stage rows and their fan-in
-- counters (done = tasks that ended), a few rows per job however many tasks it has.
SELECT j.job_id, j.job_type, j.status::text AS status, j.stage, j.total_stages, j.created_at,
       j.updated_at, j.completed_at, left(j.error_details, 300) AS error_details,
       COALESCE(p.total, 0)::bigint AS task_count,
       (SELECT count(*) FROM app.tasks t WHERE t.parent_job_id = j.job_id AND t.stage = j.stage
          AND t.status = 'failed') AS failed_tasks,
       j.attempt, COALESCE(p.done, 0)::bigint AS done_tasks
FROM app.jobs j
LEFT JOIN LATERAL (
  SELECT sum(s.task_count) AS total,
         sum(s.task_count - COALESCE((SELECT sum(c.remaining) FROM app.stage_counters c
                                      WHERE c.job_id = s.job_id AND c.stage = s.stage), 0)) AS done
  FROM app.job_stages s WHERE s.job_id = j.job_id
) p ON true
WHERE ($1::text IS NULL OR j.status::text = $1)
  AND ($2::text IS NULL OR j.job_type = $2)
  AND ($3::text IS NULL OR j.job_id LIKE $3 || '%')
  AND ($4::timestamptz IS NULL OR j.created_at >= $4)
  AND ($5::timestamptz IS NULL OR j.created_at < $5)
  AND ($6::timestamptz IS NULL OR (j.created_at, j.job_id) < ($6::timestamptz, $7::text))
ORDER BY j.created_at DESC, j.job_id DESC
LIMIT $8
