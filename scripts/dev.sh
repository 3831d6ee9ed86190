#!/usr/bin/env bash
# Run CoreMachine locally: installs PostgreSQL if missing, starts a private cluster, builds, and
# runs local mode on http://127.0.0.1:7071 (the handler plus the host emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/pg.sh
source scripts/lib/pg.sh
ensure_postgres_running
# shellcheck source=lib/geo.sh
source scripts/lib/geo.sh && ensure_geo_installed # GDAL, PostGIS; PGSTAC_SQL for the pgSTAC migration
psql "$PG_ADMIN_URL" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'coremachine'" | grep -q 1 \
  || psql "$PG_ADMIN_URL" -qc "CREATE DATABASE coremachine"
export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/coremachine"
# Readable log lines on the terminal (LOG_FORMAT=json for the JSON lines of production).
export LOG_FORMAT="${LOG_FORMAT:-pretty}"
cargo build --release
echo "==> DATABASE_URL=$DATABASE_URL"
exec ./target/release/coremachine local --port "${COREMACHINE_PORT:-7071}" --app-root "$PWD"
