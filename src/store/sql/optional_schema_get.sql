-- The recorded install of an optional schema (pgSTAC).
SELECT version, checksum, target, applied_at FROM app.optional_schemas WHERE name = $1
