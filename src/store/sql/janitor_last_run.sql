-- The most recent janitor run (health).
SELECT run_id, status, started_at, completed_at, items_scanned, items_fixed
FROM app.janitor_runs ORDER BY started_at DESC LIMIT 1
