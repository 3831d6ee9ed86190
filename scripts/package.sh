#!/usr/bin/env bash
# Makes the Functions deployment zip: the binary `coremachine` (mode 0755), host.json and every
# function folder (each holding a function.json), laid out as the Functions host expects them at
# the app root. Built on Linux so the executable bit survives (functions-protocol.md §9.10).
#
#   scripts/package.sh [BINARY] [OUT.zip]
#     BINARY  default: the release build of scripts/build-release.sh
#     OUT     default: target/coremachine-functions.zip
#
# After zipping, the archive is checked: the binary is there with mode 0755, host.json and every
# function.json are there, and nothing else is.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/azure-release/x86_64-unknown-linux-gnu/release/coremachine}
OUT=${2:-target/coremachine-functions.zip}

fail() { echo "package: $*" >&2; exit 1; }

[ -f "$BIN" ] || fail "no binary at $BIN (run scripts/build-release.sh first)"
[ -f host.json ] || fail "host.json is missing"
if ! command -v zip >/dev/null 2>&1 || ! command -v unzip >/dev/null 2>&1; then
  echo "==> installing zip and unzip" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq zip unzip >/dev/null
fi

mapfile -t functions < <(find . -mindepth 2 -maxdepth 2 -name function.json \
  -not -path './target/*' -not -path './.dev/*' -not -path './node_modules/*' \
  -printf '%h\n' | sed 's|^\./||' | sort)
[ ${#functions[@]} -gt 0 ] || fail "no function folders (*/function.json) found"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$BIN" "$stage/coremachine"
install -m 0644 host.json "$stage/host.json"
for f in "${functions[@]}"; do
  mkdir -p "$stage/$f"
  install -m 0644 "$f/function.json" "$stage/$f/function.json"
done

mkdir -p "$(dirname "$OUT")"
out_abs="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
rm -f "$out_abs"
# -X: no extra (uid/gid/time) fields; unix permissions are kept in the central directory.
(cd "$stage" && zip -q -X -r "$out_abs" coremachine host.json "${functions[@]}")

# Check what was written.
listing=$(unzip -Z "$out_abs")
# (here-strings, not pipes: grep -q exits early and pipefail would turn that into a failure)
grep -Eq '^-rwxr-xr-x .* coremachine$' <<<"$listing" || fail "coremachine is not mode 0755 in the zip:
$listing"
grep -Eq ' host\.json$' <<<"$listing" || fail "host.json is missing from the zip"
for f in "${functions[@]}"; do
  grep -Eq " $f/function\.json$" <<<"$listing" || fail "$f/function.json is missing from the zip"
done
entries=$(unzip -Z1 "$out_abs" | grep -cv '/$')
want=$(( 2 + ${#functions[@]} ))
[ "$entries" -eq "$want" ] || fail "the zip has $entries files, expected $want"
echo "packaged $out_abs: coremachine (0755), host.json, ${#functions[@]} functions (${functions[*]})"
