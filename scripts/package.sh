#!/usr/bin/env bash
# Makes the Functions deployment zip, laid out as the Functions host expects it at the app root:
# host.json, every function folder (each holding a function.json) and `coremachine` (mode 0755),
# the executable host.json names. Built on Linux so the executable bit survives
# (functions-protocol.md §9.10).
#
#   scripts/package.sh [BINARY] [OUT.zip]
#     BINARY  default: the release build of scripts/build-release.sh
#     OUT     default: target/coremachine-functions.zip
#
# Two layouts, chosen by what BINARY is:
#  - a dynamically linked ELF (the release build links Debian's libgdal): a self-contained bundle.
#      coremachine          launcher (sh): sets GDAL_DATA, PROJ_DATA/PROJ_LIB, GDAL_DRIVER_PATH,
#                           GCONV_PATH to the bundle and execs the binary with the bundled loader
#      bin/coremachine      the binary
#      lib/                 every library `ldd` lists (GDAL, PROJ, their dependencies, glibc and
#                           its loader ld-linux-x86-64.so.2) and glibc's gconv modules
#      share/gdal/          GDAL's data files (gdal-data)
#      share/proj/          PROJ's proj.db and grids
#    Because the loader and glibc travel with it, the bundle does not depend on the image's glibc
#    or packages (docs/operations.md, "The deployment artifact"). scripts/check-bundle.sh runs it
#    in a Debian root without GDAL.
#  - anything else (a statically linked binary, a stand-in): the binary itself as `coremachine`.
#
# After zipping, the archive is checked: the executables are there with mode 0755, host.json and
# every function.json are there, and nothing else; a bundle must also resolve every library
# inside lib/ and start (`coremachine --version`) with an empty environment.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/azure-release/x86_64-unknown-linux-gnu/release/coremachine}
OUT=${2:-target/coremachine-functions.zip}
# Where the bundle's data comes from (Debian's gdal-data and proj-data).
GDAL_DATA_SRC=${GDAL_DATA_SRC:-/usr/share/gdal}
PROJ_DATA_SRC=${PROJ_DATA_SRC:-/usr/share/proj}
GCONV_SRC=${GCONV_SRC:-/usr/lib/x86_64-linux-gnu/gconv}
LOADER=ld-linux-x86-64.so.2

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

# A dynamically linked ELF has a program interpreter; `ldd` then lists its closure.
is_dynamic_elf() {
  [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ] || return 1
  local deps
  deps=$(ldd "$1" 2>/dev/null) || return 1
  grep -q '=>' <<<"$deps"
}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0644 host.json "$stage/host.json"
for f in "${functions[@]}"; do
  mkdir -p "$stage/$f"
  install -m 0644 "$f/function.json" "$stage/$f/function.json"
done

# Copies the binary's library closure into $stage/lib under the names the binary asks for.
bundle_libs() {
  local bin=$1 name path
  mkdir -p "$stage/lib"
  while read -r name path; do
    case "$path" in
      "not found") fail "$bin needs $name, which is not installed on the build machine" ;;
      /*) cp -L "$path" "$stage/lib/$name"; chmod 0644 "$stage/lib/$name" ;;
    esac
  done < <(ldd "$bin" | awk '$2 == "=>" { print $1, ($3 == "not" ? "not found" : $3) }')
  local loader
  loader=$(ldd "$bin" | awk -v l="$LOADER" '$1 ~ l"$" { print $1 }')
  [ -n "$loader" ] || fail "$bin does not use $LOADER (ldd lists no loader)"
  install -m 0755 "$loader" "$stage/lib/$LOADER"
  # glibc loads its charset converters at run time (iconv, used by GDAL's CPLRecode for
  # non-UTF-8 encodings); the image's modules belong to another glibc.
  if [ -d "$GCONV_SRC" ]; then
    cp -a "$GCONV_SRC" "$stage/lib/gconv"
  fi
}

# The launcher: host.json's defaultExecutablePath. Paths are relative to the launcher itself, so
# the bundle runs from wherever the host unpacked it (/home/site/wwwroot on Azure).
write_launcher() {
  cat >"$stage/coremachine" <<'EOF'
#!/bin/sh
# CoreMachine launcher (made by scripts/package.sh): runs bin/coremachine with the loader,
# glibc, GDAL and PROJ bundled in lib/, so nothing is taken from the image but the kernel.
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P) || exit 127
export GDAL_DATA="$here/share/gdal"
export PROJ_DATA="$here/share/proj"
export PROJ_LIB="$here/share/proj"
# No GDAL plugins from the image (they were built against another GDAL).
export GDAL_DRIVER_PATH=disable
export GCONV_PATH="$here/lib/gconv"
exec "$here/lib/ld-linux-x86-64.so.2" --library-path "$here/lib" --argv0 "$0" "$here/bin/coremachine" "$@"
EOF
  chmod 0755 "$stage/coremachine"
}

bundle=
if is_dynamic_elf "$BIN"; then
  bundle=1
  [ -d "$GDAL_DATA_SRC" ] || fail "GDAL's data is missing at $GDAL_DATA_SRC (apt-get install gdal-data)"
  [ -f "$PROJ_DATA_SRC/proj.db" ] || fail "PROJ's proj.db is missing at $PROJ_DATA_SRC (apt-get install proj-data)"
  mkdir -p "$stage/bin" "$stage/share"
  install -m 0755 "$BIN" "$stage/bin/coremachine"
  bundle_libs "$BIN"
  cp -a "$GDAL_DATA_SRC" "$stage/share/gdal"
  cp -a "$PROJ_DATA_SRC" "$stage/share/proj"
  write_launcher
  # Every library must resolve inside lib/ (the bundled loader lists what it would load) ...
  resolved=$("$stage/lib/$LOADER" --library-path "$stage/lib" --list "$stage/bin/coremachine") \
    || fail "the bundled loader cannot load bin/coremachine:
$resolved"
  outside=$(awk '$2 == "=>" && index($3, "'"$stage/lib/"'") != 1 { print }' <<<"$resolved")
  [ -z "$outside" ] || fail "libraries resolved outside the bundle:
$outside"
  # ... and it starts with nothing from the environment.
  version=$(env -i "$stage/coremachine" --version 2>&1) || fail "the bundle does not start: $version"
  # A stand-in binary may not know --version; running at all is what matters.
  echo "bundle starts: ${version:-(no output)}"
else
  install -m 0755 "$BIN" "$stage/coremachine"
fi

mkdir -p "$(dirname "$OUT")"
out_abs="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
rm -f "$out_abs"
contents=(coremachine host.json "${functions[@]}")
[ -z "$bundle" ] || contents+=(bin lib share)
# -X: no extra (uid/gid/time) fields; unix permissions are kept in the central directory.
# -y: symbolic links inside the data folders stay links.
(cd "$stage" && zip -q -X -y -r "$out_abs" "${contents[@]}")

# Check what was written.
listing=$(unzip -Z "$out_abs")
# (here-strings, not pipes: grep -q exits early and pipefail would turn that into a failure)
grep -Eq '^-rwxr-xr-x .* coremachine$' <<<"$listing" || fail "coremachine is not mode 0755 in the zip:
$listing"
grep -Eq ' host\.json$' <<<"$listing" || fail "host.json is missing from the zip"
for f in "${functions[@]}"; do
  grep -Eq " $f/function\.json$" <<<"$listing" || fail "$f/function.json is missing from the zip"
done
files=$(unzip -Z1 "$out_abs" | grep -v '/$')
if [ -z "$bundle" ]; then
  entries=$(grep -c . <<<"$files")
  want=$(( 2 + ${#functions[@]} ))
  [ "$entries" -eq "$want" ] || fail "the zip has $entries files, expected $want"
  echo "packaged $out_abs: coremachine (0755), host.json, ${#functions[@]} functions (${functions[*]})"
else
  for x in bin/coremachine "lib/$LOADER"; do
    grep -Eq "^-rwxr-xr-x .* $x\$" <<<"$listing" || fail "$x is not mode 0755 in the zip"
  done
  grep -Eq '^share/proj/proj\.db$' <<<"$files" || fail "share/proj/proj.db is missing from the zip"
  grep -Eq '^share/gdal/' <<<"$files" || fail "share/gdal/ is missing from the zip"
  fn_re=$(printf '%s|' "${functions[@]}")
  stray=$(grep -Ev "^(coremachine|host\.json|(${fn_re%|})/function\.json|bin/coremachine|lib/.+|share/(gdal|proj)/.+)\$" <<<"$files" || true)
  [ -z "$stray" ] || fail "unexpected files in the zip: $stray"
  libs=$(find "$stage/lib" -maxdepth 1 -name '*.so*' | wc -l)
  echo "packaged $out_abs ($(du -h "$out_abs" | cut -f1)): launcher coremachine (0755), bin/coremachine, $libs libraries in lib/ (glibc and its loader included), share/gdal, share/proj, host.json, ${#functions[@]} functions (${functions[*]})"
fi
