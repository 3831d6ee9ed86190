# shellcheck shell=bash
# Sourced by test.sh (after pg.sh): a SECOND private PostgreSQL cluster with TLS on, for the
# tests of sslmode require / verify-full (tests/azure_pg_tls.rs) and of the Entra-token password.
#
#   - a self-signed test CA and a server certificate for localhost / 127.0.0.1 signed by it,
#     plus an unrelated "wrong" CA, made with the openssl command-line tool (apt, if missing);
#   - its own data dir (default .dev/pg_tls) on port 55433, ssl=on;
#   - pg_hba: TLS only (plain TCP is rejected, like Azure's require_secure_transport); postgres
#     is trusted, every other role needs its password (scram), which lets a test check that the
#     managed-identity token really is the password.
#
# Inputs (optional): COREMACHINE_PG_TLS_DIR, COREMACHINE_PG_TLS_PORT (default 55433).
# Outputs: TEST_PG_TLS_URL, TEST_PG_TLS_CA, TEST_PG_TLS_WRONG_CA.
# stop_pg_tls stops the cluster if this script started it (test.sh calls it on exit).

pg_tls_make_certs() {
  local d=$1
  mkdir -p "$d"
  [ -f "$d/server.crt" ] && [ -f "$d/wrong-ca.crt" ] && return 0
  if ! command -v openssl >/dev/null 2>&1; then
    echo "==> installing the openssl command-line tool (test certificates)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq openssl >/dev/null
  fi
  echo "==> creating a test CA and server certificate in $d" >&2
  (
    cd "$d" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=CoreMachine Test CA" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Unrelated Test CA" \
      -keyout wrong-ca.key -out wrong-ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt 2>/dev/null
    rm -f server.csr server.ext ca.srl
  )
}

ensure_pg_tls_running() {
  local root bin dir certs port
  root=$(pg_root_dir)
  bin=$(pg_bin_dir)
  port=${COREMACHINE_PG_TLS_PORT:-55433}
  dir=${COREMACHINE_PG_TLS_DIR:-$root/.dev/pg_tls}
  certs="$dir-certs"
  pg_tls_make_certs "$certs"
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$(dirname "$dir")"
    chown -R postgres:postgres "$certs"
  fi
  chmod 600 "$certs/server.key"
  if [ ! -f "$dir/PG_VERSION" ]; then
    echo "==> creating the TLS test cluster in $dir" >&2
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    pg_as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    pg_as_owner sh -c "cat > '$dir/pg_hba.conf'" <<'EOF'
local   all       all                       trust
hostssl all       postgres  127.0.0.1/32    trust
hostssl all       all       127.0.0.1/32    scram-sha-256
host    all       all       127.0.0.1/32    reject
EOF
  fi
  PG_TLS_STARTED_HERE=
  if ! pg_as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    echo "==> starting the TLS test cluster on 127.0.0.1:$port" >&2
    pg_as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start -o \
      "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c ssl=on \
       -c ssl_cert_file=$certs/server.crt -c ssl_key_file=$certs/server.key \
       -c max_connections=50 -c shared_buffers=32MB -c fsync=off" >/dev/null
    PG_TLS_STARTED_HERE=$dir
  fi
  export TEST_PG_TLS_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export TEST_PG_TLS_CA="$certs/ca.crt"
  export TEST_PG_TLS_WRONG_CA="$certs/wrong-ca.crt"
}

stop_pg_tls() {
  if [ -n "${PG_TLS_STARTED_HERE:-}" ]; then
    pg_as_owner "$(pg_bin_dir)/pg_ctl" -D "$PG_TLS_STARTED_HERE" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# Adds stop_pg_tls to the EXIT trap without replacing what is already there.
pg_tls_stop_on_exit() {
  local prev
  prev=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\\1/")
  # shellcheck disable=SC2064
  trap "${prev:+$prev; }stop_pg_tls" EXIT
}
