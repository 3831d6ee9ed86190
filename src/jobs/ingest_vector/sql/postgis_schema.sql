-- The schema the postgis extension is installed in (no row: not installed).
SELECT n.nspname::text AS schema_name
FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'postgis'
