# shellcheck shell=bash
# Sourced by test.sh after the Rust tests: checks the running service against its own OpenAPI
# document with schemathesis (PyPI). `coremachine local` runs on a free port with a fresh
# database and function/admin keys; any 5xx, undocumented status, wrong content type or response
# that does not match the document fails the suite. Bounded: about a thousand requests per pass;
# the stateful phase follows the submit response links to real jobs (status, cancel, resubmit).
#
# Inputs: PG_ADMIN_URL (from pg.sh). Optional: SCHEMATHESIS_MAX_EXAMPLES (default 30),
# SKIP_SCHEMATHESIS=1 to skip.

SCHEMATHESIS_VERSION=4.32.5

ensure_schemathesis() {
  local venv=$1
  if [ -x "$venv/bin/schemathesis" ] &&
    "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    return
  fi
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "==> installing python3-venv from the OS packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

run_schemathesis() {
  local root venv db port url pid status=0
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  venv=$root/.dev/schemathesis
  ensure_schemathesis "$venv"
  cargo build --quiet --bin coremachine
  db=cm_schemathesis_$$
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -qc "CREATE DATABASE $db" >/dev/null
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  url=http://127.0.0.1:$port
  DATABASE_URL="${PG_ADMIN_URL%/*}/$db" LOCAL_FUNCTION_KEYS=schemathesis-function-key \
    LOCAL_ADMIN_KEY=schemathesis-admin-key COREMACHINE_ADMIN_ENABLED=true RUST_LOG=warn \
    "$root/target/debug/coremachine" local --port "$port" --app-root "$root" \
    >"$root/target/schemathesis-server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 150); do
    python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "$url/api/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  local checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
  local common=(--checks "$checks" --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}"
    --phases examples,coverage,fuzzing,stateful --workers 1 --no-color --seed 1 --request-timeout 30)
  # Pass 1: the master key opens every route (admin ones too), except the redeploy, which would
  # drop the schema under the other requests. Pass 2: a function key on every route (401s on
  # the admin ones must conform too).
  echo "==> schemathesis against $url (master key, all but redeploy)"
  (cd "$root/target" && "$venv/bin/schemathesis" run "$url/api/openapi.json" "${common[@]}" \
    -H "x-functions-key: schemathesis-admin-key" --exclude-operation-id redeploy_schema) || status=1
  echo "==> schemathesis against $url (function key)"
  (cd "$root/target" && "$venv/bin/schemathesis" run "$url/api/openapi.json" "${common[@]}" \
    -H "x-functions-key: schemathesis-function-key") || status=1
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  if [ "$status" != 0 ]; then
    echo "schemathesis found problems (server log: target/schemathesis-server.log)" >&2
    return 1
  fi
}

if [ "${SKIP_SCHEMATHESIS:-0}" != 1 ]; then
  run_schemathesis
fi
