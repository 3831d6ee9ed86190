# shellcheck shell=bash
# Sourced by dev.sh and test.sh: installs the geospatial toolchain idempotently on Debian 12.
#
# - GDAL 3.6 (libgdal-dev for the `gdal` crate's link, gdal-bin for the tools) and PostGIS 3 for
#   the system's PostgreSQL (15 on Debian 12; pgSTAC needs it), from apt;
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

# The PostGIS package of the newest installed PostgreSQL (the one scripts/lib/pg.sh runs), else 15.
geo_postgis_package() {
  local d major=15
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && major=$(basename "$(dirname "$d")")
  echo "postgresql-$major-postgis-3"
}

ensure_geo_installed() {
  geo_apt_install libgdal-dev gdal-bin "$(geo_postgis_package)" python3-venv python3-pip
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

# Real vector files for tests/vector_job.rs, fetched (never committed) into .dev/vector:
# Natural Earth shapefiles (public domain) from PyPI's geopandas 0.14.4 wheel, and Debian's
# r-cran-spdata (CC0: world.gpkg, cycle_hire.geojson, cycle_hire_xy.csv, world_wkt.csv) and
# r-cran-sf (GPL-2: nc.gpkg, nc.shp in NAD27), and spData's two rasters (CC0: raster/elev.tif,
# Float32 with NaN nodata; raster/grain.tif, categorical Byte) for tests/raster_job.rs.
# Exports COREMACHINE_VECTOR_DIR and COREMACHINE_SPDATA_RASTER_DIR.
ensure_vector_test_data() {
  local dir deb
  dir="$(geo_dev_dir)/vector"
  if [ ! -s "$dir/.complete" ] || [ ! -f "$dir/spdata-raster/grain.tif" ]; then
    echo "==> fetching vector test files (geopandas wheel from PyPI, r-cran-spdata and r-cran-sf from Debian)" >&2
    rm -rf "$dir" && mkdir -p "$dir/pkg"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir/pkg" "geopandas==0.14.4"
    python3 - "$dir/pkg" "$dir" <<'PY'
import glob, os, sys, zipfile
pkg, out = sys.argv[1:]
(wheel,) = glob.glob(f"{pkg}/geopandas-0.14.4-*.whl")
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        for layer in ("naturalearth_lowres", "naturalearth_cities"):
            if n.startswith(f"geopandas/datasets/{layer}/{layer}."):
                os.makedirs(f"{out}/{layer}", exist_ok=True)
                open(f"{out}/{layer}/{os.path.basename(n)}", "wb").write(z.read(n))
PY
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    (cd "$dir/pkg" && apt-get -o APT::Sandbox::User=root download -qq r-cran-spdata r-cran-sf >/dev/null)
    for deb in "$dir"/pkg/*.deb; do dpkg-deb -x "$deb" "$dir/pkg/root"; done
    local lib="$dir/pkg/root/usr/lib/R/site-library"
    cp "$lib"/spData/shapes/{world.gpkg,cycle_hire.geojson} "$lib"/spData/misc/{cycle_hire_xy.csv,world_wkt.csv} "$dir/"
    mkdir -p "$dir/nc" && cp "$lib"/sf/gpkg/nc.gpkg "$lib"/sf/shape/nc.* "$dir/nc/"
    mkdir -p "$dir/spdata-raster" && cp "$lib"/spData/raster/* "$dir/spdata-raster/"
    rm -rf "$dir/pkg"
    date -u > "$dir/.complete"
  fi
  export COREMACHINE_VECTOR_DIR="$dir"
  export COREMACHINE_SPDATA_RASTER_DIR="$dir/spdata-raster"
}
