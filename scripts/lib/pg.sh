# shellcheck shell=bash
# Sourced by dev.sh and test.sh: installs PostgreSQL from the OS packages when it is missing and
# starts a private cluster (durable settings: fsync and synchronous_commit on, as in Azure).
#
# Inputs (optional): COREMACHINE_PGDIR (data dir), COREMACHINE_PGPORT (default 55432; when another
# program holds that port, ensure_postgres_running fails naming COREMACHINE_PGPORT).
# Outputs: PGPORT, PG_ADMIN_URL (superuser URL to the postgres database).

pg_root_dir() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

pg_bin_dir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && echo "$d"
}

ensure_postgres_installed() {
  if [ -z "$(pg_bin_dir)" ]; then
    echo "==> installing PostgreSQL from the OS packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql postgresql-contrib >/dev/null
  fi
}

# Runs a command as the cluster owner (PostgreSQL refuses to run as root).
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
pg_port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ensure_postgres_running() {
  ensure_postgres_installed
  local root bin
  root=$(pg_root_dir)
  bin=$(pg_bin_dir)
  PGPORT=${COREMACHINE_PGPORT:-55432}
  local dir=${COREMACHINE_PGDIR:-$root/.dev/pg}
  local sock=/tmp
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
    mkdir -p "$(dirname "$dir")"
    chmod o+x "$(dirname "$dir")" "$root" 2>/dev/null || true
  fi
  if ! pg_as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1 && pg_port_taken "$PGPORT"; then
    # Another PostgreSQL (or any program) listens there: say so instead of pg_ctl's
    # "could not start server".
    echo "error: 127.0.0.1:$PGPORT is already taken by another PostgreSQL or program, and the" \
      "private cluster in $dir is not running. Set COREMACHINE_PGPORT to a free port, e.g." \
      "COREMACHINE_PGPORT=$((PGPORT + 1)) $0" >&2
    return 1
  fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    echo "==> creating a private PostgreSQL cluster in $dir" >&2
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    pg_as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! pg_as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    echo "==> starting PostgreSQL on 127.0.0.1:$PGPORT" >&2
    pg_as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start -o \
      "-p $PGPORT -k $sock -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
       -c max_connections=400 -c shared_buffers=256MB -c shared_preload_libraries=pg_stat_statements \
       -c max_wal_size=2GB" >/dev/null
  fi
  export PGPORT
  export PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
}
