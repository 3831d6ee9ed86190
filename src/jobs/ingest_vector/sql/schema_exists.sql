-- Whether schema $1 exists.
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1::text) AS present
