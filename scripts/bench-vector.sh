#!/usr/bin/env bash
# The ingest_vector benchmark of docs/performance.md: 1,000,000 generated points through
# ingest_vector (release build, local mode, real routes, Azurite, PostGIS) and through
# `ogr2ogr -f PostgreSQL` with PG_USE_COPY=YES, into the same database in the same run.
# Not part of ./scripts/test.sh (a release build of the test binary takes minutes).
# Knobs: BENCH_VECTOR_ROWS (1000000), BENCH_VECTOR_CHUNKS (20000,5000), BENCH_VECTOR_CALLS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/pg.sh
source scripts/lib/pg.sh
ensure_postgres_running
export TEST_DATABASE_URL="$PG_ADMIN_URL"
# shellcheck source=lib/azurite.sh
source scripts/lib/azurite.sh && ensure_azurite_running
# shellcheck source=lib/geo.sh
source scripts/lib/geo.sh && ensure_geo_test_tools
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
BENCH_VECTOR=1 cargo test --release --test tests -- vector_job::bench_a_million_points_against_ogr2ogr --exact --nocapture 2>&1 |
  grep -E '^BENCH|test result|panicked'
