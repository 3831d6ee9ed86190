-- Schemas CoreMachine installs from a file it does not embed (pgSTAC, from PyPI's pypgstac
-- wheel; see src/store/pgstac.rs): which one, its version, the file's checksum, and the database
-- it went into. Applied by `coremachine migrate` when PGSTAC_SQL names the file.
CREATE TABLE app.optional_schemas (
  name TEXT PRIMARY KEY,
  version TEXT NOT NULL,
  checksum TEXT NOT NULL,
  target TEXT NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
