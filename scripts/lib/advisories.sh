# shellcheck shell=bash
# Sourced by test.sh: checks Cargo.lock against the RustSec advisory database, offline.
#
# cargo-audit is installed once from crates.io (the registry is the one network a CI run has). The database is NOT fetched: it is the copy at $COREMACHINE_ADVISORY_DB,
# by default shared/advisory-db beside the repository (CI gets shared/ there), refreshed by
# scripts/refresh-advisory-db.sh. Any advisory that applies fails the run: vulnerabilities and
# the informational ones (unmaintained, unsound) alike. Yanked crates are not checked: that asks
# the registry's index.

CARGO_AUDIT_VERSION=0.22.2

advisories_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

advisory_db() {
  echo "${COREMACHINE_ADVISORY_DB:-$(dirname "$(advisories_root)")/shared/advisory-db}"
}

# In cargo's own bin folder (~/.cargo/bin), not .dev/: CI runs in a fresh clone each time, and
# building cargo-audit takes minutes on this machine.
ensure_cargo_audit_installed() {
  # (It prints "cargo-audit-audit 0.22.2".)
  if cargo audit --version 2>/dev/null | grep -q " $CARGO_AUDIT_VERSION$"; then
    return 0
  fi
  echo "==> installing cargo-audit $CARGO_AUDIT_VERSION from crates.io (once)" >&2
  cargo install --quiet --locked --no-default-features cargo-audit --version "$CARGO_AUDIT_VERSION"
}

check_advisories() {
  local db
  db=$(advisory_db)
  if [ ! -d "$db/crates" ]; then
    # The database cannot be fetched at test time (no network but the package registries) and a
    # copy of it is not ours to commit: it comes from shared/ or COREMACHINE_ADVISORY_DB. Without
    # it the check is NOT RUN, said loudly; COREMACHINE_REQUIRE_ADVISORY_DB=1 makes that a failure.
    echo "==> ADVISORY CHECK NOT RUN: no RustSec advisory database at $db (set COREMACHINE_ADVISORY_DB, or see scripts/refresh-advisory-db.sh)" >&2
    [ "${COREMACHINE_REQUIRE_ADVISORY_DB:-0}" = 1 ] && return 1
    return 0
  fi
  ensure_cargo_audit_installed
  echo "==> cargo audit (advisory database $db, $(cat "$db/.snapshot" 2>/dev/null || echo 'snapshot date unknown'))"
  # --no-fetch: never the network; --stale: a copy older than a week is still used;
  # --no-yanked: that check asks the registry; --deny warnings: unmaintained and unsound crates
  # fail the run too.
  # Ignored, each with its reason:
  # - RUSTSEC-2023-0089 (atomic-polyfill unmaintained): only in Cargo.lock as an optional
  #   dependency of geo-types' rstar_0_8..0_10 features (heapless 0.7), which nothing enables:
  #   `cargo tree --target all -i atomic-polyfill` prints nothing, so it is never built.
  cargo audit \
    --db "$db" --no-fetch --stale --no-yanked --deny warnings \
    --ignore RUSTSEC-2023-0089 \
    --file "$(advisories_root)/Cargo.lock"
}
