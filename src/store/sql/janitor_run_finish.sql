UPDATE app.janitor_runs
SET completed_at = now(), duration_ms = $2, status = $3, items_scanned = $4, items_fixed = $5,
    actions_taken = $6, error_details = $7
WHERE run_id = $1
