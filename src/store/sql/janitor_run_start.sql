INSERT INTO app.janitor_runs (run_id, run_type, status) VALUES ($1, $2, 'running')
