-- One page of the per-input outcomes of job $1 (result_data.inputs, as process_raster_collection's
-- finalize writes them; none for other job types or before the job ends): only outcome $2 when
-- given, failures first, then in the result's order; offset $3, at most $4 rows.
SELECT x.value
FROM app.jobs j
CROSS JOIN LATERAL jsonb_array_elements(
  CASE WHEN jsonb_typeof(j.result_data -> 'inputs') = 'array' THEN j.result_data -> 'inputs'
       ELSE '[]'::jsonb END
) WITH ORDINALITY AS x(value, n)
WHERE j.job_id = $1 AND ($2::text IS NULL OR x.value ->> 'outcome' = $2::text)
ORDER BY (x.value ->> 'outcome' = 'ok'), x.n
OFFSET $3 LIMIT $4
