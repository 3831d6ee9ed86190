-- Records (or updates) the install of an optional schema.
INSERT INTO app.optional_schemas (name, version, checksum, target)
VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
SET version = EXCLUDED.version, checksum = EXCLUDED.checksum, target = EXCLUDED.target, applied_at = now()
