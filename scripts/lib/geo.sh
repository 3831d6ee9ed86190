# shellcheck shell=bash
# Sourced by dev.sh and test.sh: installs the geospatial toolchain idempotently on Debian 12.
#
# - GDAL 3.6 (libgdal-dev for the `gdal` crate's link, gdal-bin for the tools) and PostGIS 3 for
#   the system's PostgreSQL 15 (pgSTAC needs it), from apt;
# - the pgSTAC 0.10.0 schema, taken from PyPI's pypgstac wheel (pgSTAC is not packaged by Debian)
#   into .dev/pgstac/pgstac.0.10.0.sql;
# - test tools only (ensure_geo_test_tools): rio-cogeo 7.0.4 in a venv under .dev/rio-cogeo (the
#   independent COG validator) and Debian's r-cran-terra example rasters (GPL-3: fetched, never
#   committed) unpacked under .dev/terra.
#
# Outputs: PGSTAC_SQL (path of the pgSTAC SQL, which `coremachine migrate` applies), and from
# ensure_geo_test_tools also COREMACHINE_RIO (the `rio` binary) and COREMACHINE_TERRA_DIR (the
# directory holding elev.tif, meuse.tif, logo.tif).

PGSTAC_VERSION=0.10.0
RIO_COGEO_VERSION=7.0.4

geo_dev_dir() { echo "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.dev"; }

# apt-get install of the packages that are missing; apt-get update once per call.
geo_apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing ${missing[*]} from the OS packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Another apt run may hold the dpkg lock for a while: wait for it instead of failing.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
}

ensure_geo_installed() {
  geo_apt_install libgdal-dev gdal-bin postgresql-15-postgis-3 python3-venv python3-pip
  local dir sql
  dir="$(geo_dev_dir)/pgstac"
  sql="$dir/pgstac.$PGSTAC_VERSION.sql"
  if [ ! -s "$sql" ]; then
    echo "==> fetching pypgstac $PGSTAC_VERSION from PyPI for the pgSTAC schema" >&2
    mkdir -p "$dir/wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir/wheel" "pypgstac==$PGSTAC_VERSION"
    python3 - "$dir/wheel" "$sql" "$PGSTAC_VERSION" <<'EOF'
import glob, sys, zipfile
wheel_dir, out, version = sys.argv[1:]
(wheel,) = glob.glob(f"{wheel_dir}/pypgstac-{version}-*.whl")
with zipfile.ZipFile(wheel) as z:
    name = f"pypgstac/migrations/pgstac.{version}.sql"
    data = z.read(name)
open(out + ".part", "wb").write(data)
EOF
    mv "$sql.part" "$sql"
  fi
  export PGSTAC_SQL="$sql"
}

ensure_geo_test_tools() {
  ensure_geo_installed
  local dev venv terra deb
  dev=$(geo_dev_dir)
  venv="$dev/rio-cogeo"
  if [ ! -f "$venv/.installed-$RIO_COGEO_VERSION" ] || [ ! -x "$venv/bin/rio" ]; then
    echo "==> installing rio-cogeo $RIO_COGEO_VERSION from PyPI into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "rio-cogeo==$RIO_COGEO_VERSION"
    touch "$venv/.installed-$RIO_COGEO_VERSION"
  fi
  export COREMACHINE_RIO="$venv/bin/rio"
  terra="$dev/terra"
  if [ ! -s "$terra/ex/elev.tif" ]; then
    echo "==> fetching Debian's r-cran-terra for its example rasters (GPL-3, not committed)" >&2
    rm -rf "$terra" && mkdir -p "$terra/pkg"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    (cd "$terra/pkg" && apt-get -o APT::Sandbox::User=root download -qq r-cran-terra >/dev/null)
    deb=$(ls "$terra"/pkg/r-cran-terra_*.deb)
    dpkg-deb -x "$deb" "$terra/pkg/root"
    mkdir -p "$terra/ex"
    cp "$terra"/pkg/root/usr/lib/R/site-library/terra/ex/{elev.tif,meuse.tif,logo.tif} "$terra/ex/"
    rm -rf "$terra/pkg"
  fi
  export COREMACHINE_TERRA_DIR="$terra/ex"
}
