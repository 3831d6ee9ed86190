-- Running stages of processing jobs with no live task left: their end was never applied.
SELECT js.job_id, js.stage FROM app.job_stages js
JOIN app.jobs j ON j.job_id = js.job_id AND j.status = 'processing' AND j.stage = js.stage
WHERE js.status = 'running'
  AND NOT EXISTS (SELECT 1 FROM app.tasks t WHERE t.parent_job_id = js.job_id AND t.stage = js.stage
                  AND t.status IN ('queued', 'processing'))
LIMIT $1
