#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what it needs, starts a private
# PostgreSQL, checks formatting and lints, then runs every test against the real database.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/pg.sh
source scripts/lib/pg.sh
ensure_postgres_running
export TEST_DATABASE_URL="$PG_ADMIN_URL"
# shellcheck source=lib/browser.sh
source scripts/lib/browser.sh && ensure_browser_test_tools
# shellcheck source=lib/pg_tls.sh
source scripts/lib/pg_tls.sh && ensure_pg_tls_running && pg_tls_stop_on_exit
source scripts/lib/azurite.sh && ensure_azurite_running # Blob Storage emulator for tests/blob_job.rs
# shellcheck source=lib/geo.sh
source scripts/lib/geo.sh && ensure_geo_test_tools # GDAL, PostGIS, pgSTAC SQL, rio-cogeo, terra rasters (tests/raster_job.rs)

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "==> cargo test"
RUST_TEST_THREADS=${RUST_TEST_THREADS:-4} cargo test --all-targets -- "$@" 2>&1 | tee target/test-output.log
grep -q "test result: ok" target/test-output.log
# shellcheck source=lib/schemathesis.sh
source scripts/lib/schemathesis.sh

# One plain closing line for the whole run (cargo's per-binary lines are above, schemathesis's too).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' target/test-output.log
