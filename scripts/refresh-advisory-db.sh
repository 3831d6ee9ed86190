#!/usr/bin/env bash
# Refreshes the copy of the RustSec advisory database that the offline advisory check
# (scripts/lib/advisories.sh) reads.
#
#   scripts/refresh-advisory-db.sh SOURCE [DEST]
#
# SOURCE is a newer copy of github.com/rustsec/advisory-db: a git directory (a bare clone or a
# snapshot's .git) or a checked-out folder. DEST defaults to $COREMACHINE_ADVISORY_DB, else
# shared/advisory-db beside this repository. Only the advisories (crates/, rust/) and
# support.toml are kept, with the source commit and its date in DEST/.snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: scripts/refresh-advisory-db.sh SOURCE [DEST]}
dest=${2:-${COREMACHINE_ADVISORY_DB:-$(dirname "$PWD")/shared/advisory-db}}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if git --git-dir="$src" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  git --git-dir="$src" archive HEAD crates rust support.toml | tar -x -C "$tmp"
  git --git-dir="$src" log -1 --format='commit %H of %cd' HEAD >"$tmp/.snapshot"
elif [ -d "$src/crates" ]; then
  cp -r "$src/crates" "$tmp/"
  [ -d "$src/rust" ] && cp -r "$src/rust" "$tmp/"
  [ -f "$src/support.toml" ] && cp "$src/support.toml" "$tmp/"
  (git -C "$src" log -1 --format='commit %H of %cd' HEAD 2>/dev/null || echo "copied $(date -u +%F)") >"$tmp/.snapshot"
else
  echo "refresh-advisory-db: $src is neither a git directory nor a folder holding crates/" >&2
  exit 1
fi
n=$(find "$tmp/crates" -name 'RUSTSEC-*.md' | wc -l)
if [ "$n" -lt 100 ]; then
  echo "refresh-advisory-db: only $n advisories in $src; refusing to replace $dest" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new"
mv "$tmp" "$dest.new"
trap - EXIT
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "advisory database at $dest: $n advisories, $(cat "$dest/.snapshot")"
