#!/usr/bin/env bash
# Proves that the deployment zip runs where GDAL is not installed and glibc is older: it unpacks
# the zip into minimal Debian roots (debootstrap --variant=minbase; no GDAL, no PROJ, none of
# their libraries) and, in a chroot, runs what the Functions host and the jobs would:
#   1. `coremachine --version`
#   2. process_raster's validation and COG step on generated GeoTIFFs (`coremachine raster
#      generate | validate | cog`: the job's own functions), one reprojected to EPSG:4326 (PROJ's
#      proj.db from the bundle), one Int16 DEM with nodata to EPSG:3857; each output is checked
#      again outside the chroot with the build machine's gdalinfo (LAYOUT=COG, 512x512 tiles,
#      overviews down to 512 px or less, the target CRS) and with rio-cogeo when COREMACHINE_RIO
#      names its `rio` (scripts/lib/geo.sh installs it) or `rio` is on PATH
#   3. hello_world: `coremachine local` in the chroot against PostgreSQL (the chroot shares the
#      network), a job submitted with `coremachine submit hello_world --wait` until completed
#
#   scripts/check-bundle.sh [--zip FILE]     (default: build with build-release.sh, then package.sh)
#
# Suites: CHECK_SUITES (default "bookworm bullseye": glibc 2.36 and 2.31; Azure Functions' v4
# base images are Debian 11). Roots are cached in .dev/roots/<suite> (~200 MB each, made once
# from Debian's mirror, ~2 min). PostgreSQL: TEST_DATABASE_URL or DATABASE_URL names a server
# (a database is created and dropped there); without either, the private cluster of
# scripts/lib/pg.sh is started (COREMACHINE_PGPORT). Needs root (debootstrap, chroot).
#
# The release build takes 10-20 minutes on 2 cores, so scripts/test.sh does not run this; it is
# the slow check named in the README. Takes about 2 minutes with --zip.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD

ZIP=
while [ $# -gt 0 ]; do
  case "$1" in
    --zip) ZIP=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "check-bundle: unknown argument $1" >&2; exit 2 ;;
  esac
done
SUITES=${CHECK_SUITES:-bookworm bullseye}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

fail() { echo "check-bundle: FAILED: $*" >&2; exit 1; }
step() { echo "==> $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (debootstrap and chroot)"
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
command -v gdalinfo >/dev/null 2>&1 || need+=(gdal-bin)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -z "$ZIP" ]; then
  step "release build"
  scripts/build-release.sh
  ZIP=target/coremachine-functions.zip
  step "package"
  scripts/package.sh target/azure-release/x86_64-unknown-linux-gnu/release/coremachine "$ZIP"
fi
[ -f "$ZIP" ] || fail "no zip at $ZIP"
echo "zip: $ZIP ($(du -h "$ZIP" | cut -f1)), $(unzip -Z1 "$ZIP" | grep -c '^lib/[^/]*\.so') libraries"

# PostgreSQL for hello_world: a fresh database on the given server.
ADMIN_URL=${TEST_DATABASE_URL:-${DATABASE_URL:-}}
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
if [ -z "$ADMIN_URL" ]; then
  # shellcheck source=lib/pg.sh
  source scripts/lib/pg.sh
  ensure_postgres_running
  ADMIN_URL=$PG_ADMIN_URL
fi
DB=cm_bundle_check_$$
base=${ADMIN_URL%%\?*}
query=${ADMIN_URL#"$base"}
APP_DB_URL="${base%/*}/$DB$query"

mounted=()
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

ensure_root() {
  local suite=$1 dir=$ROOT_DIR/.dev/roots/$1
  if [ ! -x "$dir/bin/sh" ]; then
    step "debootstrap --variant=minbase $suite (cached in .dev/roots/$suite)" >&2
    rm -rf "$dir.tmp"
    mkdir -p "$(dirname "$dir")"
    debootstrap --variant=minbase "$suite" "$dir.tmp" "$MIRROR" >"$ROOT_DIR/.dev/debootstrap-$suite.log" 2>&1 \
      || fail "debootstrap $suite failed (see .dev/debootstrap-$suite.log)"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# The COG checks, made outside the chroot with the build machine's GDAL.
check_cog() {
  local file=$1 crs=$2 info
  info=$(gdalinfo "$file") || fail "gdalinfo cannot open $file"
  grep -q 'LAYOUT=COG' <<<"$info" || fail "$file: gdalinfo does not report LAYOUT=COG"
  grep -q 'Block=512x512' <<<"$info" || fail "$file: not tiled 512x512"
  local smallest
  smallest=$(grep -m1 'Overviews:' <<<"$info" | grep -o '[0-9]*x[0-9]*' | tail -n 1)
  [ -n "$smallest" ] || fail "$file: no overviews"
  local w=${smallest%x*} h=${smallest#*x}
  [ "$w" -le 512 ] && [ "$h" -le 512 ] || fail "$file: smallest overview $smallest is larger than 512 px"
  gdalsrsinfo -e "$file" 2>/dev/null | grep -q "$crs" \
    || grep -q "ID\[\"EPSG\",${crs#EPSG:}\]\]\$" <<<"$info" \
    || fail "$file: CRS is not $crs"
  local rio=${COREMACHINE_RIO:-$(command -v rio || true)}
  if [ -n "$rio" ]; then
    "$rio" cogeo validate "$file" | grep -q 'is a valid cloud optimized GeoTIFF' || fail "$file: rio cogeo validate refuses it"
    echo "   rio cogeo validate: valid"
  fi
  echo "   gdalinfo: LAYOUT=COG, 512x512 tiles, smallest overview $smallest, $crs"
}

hello_world() {
  local root=$1 port log
  port=$(( 20000 + RANDOM % 20000 ))
  log=$root/work/local.log
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
  chroot "$root" /usr/bin/env -i DATABASE_URL="$APP_DB_URL" PATH=/usr/bin:/bin \
    /app/coremachine local --port "$port" --app-root /app >"$log" 2>&1 &
  server_pid=$!
  local i
  for i in $(seq 1 120); do
    if grep -q 'listening on' "$log" 2>/dev/null; then break; fi
    kill -0 "$server_pid" 2>/dev/null || fail "coremachine local exited: $(tail -n 20 "$log")"
    sleep 0.5
  done
  grep -q 'listening on' "$log" || fail "coremachine local did not start in 60 s: $(tail -n 20 "$log")"
  local out
  out=$(chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /app/coremachine submit hello_world \
    n=3 message="from the bundle on $2" --wait --timeout 120 --url "http://127.0.0.1:$port" 2>"$root/work/submit.err") \
    || fail "hello_world did not complete: $out $(cat "$root/work/submit.err")"
  grep -Eq '^job [0-9a-f]{64} completed$' <<<"$out" || fail "hello_world: no completed status in: $out"
  echo "   hello_world: completed ($(grep -o '[0-9a-f]\{64\}' <<<"$out" | head -n 1))"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
}

for suite in $SUITES; do
  root=$(ensure_root "$suite")
  glibc=$(chroot "$root" /usr/bin/ldd --version | head -n 1 | grep -o '[0-9.]*$')
  step "$suite (glibc $glibc)"
  if chroot "$root" /bin/sh -c 'ls /usr/lib/x86_64-linux-gnu/libgdal* /usr/lib/x86_64-linux-gnu/libproj* /usr/share/proj/proj.db' >/dev/null 2>&1; then
    fail "$suite root has GDAL or PROJ installed; the check needs a root without them"
  fi
  rm -rf "$root/app" "$root/work"
  mkdir -p "$root/app" "$root/work"
  unzip -q "$ZIP" -d "$root/app"
  if ! mountpoint -q "$root/proc"; then
    mount -t proc proc "$root/proc" && mounted+=("$root/proc")
  fi
  run() { chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /app/coremachine "$@"; }

  echo "   $(run --version)"
  run raster generate /work/rgb.tif --size 2048 --kind rgb >/dev/null
  run raster validate /work/rgb.tif >"$root/work/validate.json" \
    || fail "raster validate refused the generated GeoTIFF: $(cat "$root/work/validate.json")"
  grep -q '"raster_type": "rgb"' "$root/work/validate.json" || fail "validation did not detect rgb: $(cat "$root/work/validate.json")"
  run raster cog /work/rgb.tif /work/rgb-cog.tif --target-crs EPSG:4326 >"$root/work/cog.json" \
    || fail "raster cog failed"
  grep -q '"layout_cog": true' "$root/work/cog.json" || fail "the job's own checks did not pass: $(cat "$root/work/cog.json")"
  echo "   raster cog: rgb 2048x2048 EPSG:32633 -> EPSG:4326 ($(du -h "$root/work/rgb-cog.tif" | cut -f1))"
  check_cog "$root/work/rgb-cog.tif" EPSG:4326
  run raster generate /work/dem.tif --size 1500 --kind dem >/dev/null
  run raster cog /work/dem.tif /work/dem-cog.tif --target-crs EPSG:3857 >"$root/work/dem.json" \
    || fail "raster cog (dem) failed"
  grep -q '"nodata": -32768' "$root/work/dem.json" || fail "the DEM's nodata was not kept: $(cat "$root/work/dem.json")"
  echo "   raster cog: dem 1500x1500 Int16 nodata -32768 -> EPSG:3857"
  check_cog "$root/work/dem-cog.tif" EPSG:3857
  # A file that is not a raster: refused with the check and the file named, exit code 1.
  echo "not a tiff" >"$root/work/bad.tif"
  if err=$(run raster validate /work/bad.tif 2>&1); then fail "raster validate accepted a text file"; fi
  grep -q '/work/bad.tif' <<<"$err" || fail "the refusal does not name the file: $err"
  echo "   raster validate refuses a text file: ${err:0:100}"
  hello_world "$root" "$suite"
  for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done
  mounted=()
done
echo "check-bundle: OK ($SUITES)"
