-- How many inputs job $1's result lists, and how many of them are ok.
SELECT count(x.value) AS total, count(x.value) FILTER (WHERE x.value ->> 'outcome' = 'ok') AS ok
FROM app.jobs j
CROSS JOIN LATERAL jsonb_array_elements(
  CASE WHEN jsonb_typeof(j.result_data -> 'inputs') = 'array' THEN j.result_data -> 'inputs'
       ELSE '[]'::jsonb END
) AS x(value)
WHERE j.job_id = $1
