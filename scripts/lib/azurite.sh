# shellcheck shell=bash
# Sourced by test.sh: installs Azurite (Microsoft's Blob Storage emulator) from npm into
# .dev/azurite, starts its blob service in memory on a free port, and stops it when the calling
# script exits (EXIT trap, chained after any trap already set).
#
# Outputs: AZURITE_BLOB_ENDPOINT (http://127.0.0.1:PORT/devstoreaccount1), AZURITE_PID.
# The tests (tests/blob_job.rs) read AZURITE_BLOB_ENDPOINT and use Azurite's well-known
# development account key.

AZURITE_VERSION=3.35.0

azurite_dir() { echo "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.dev/azurite"; }

ensure_azurite_installed() {
  local dir
  dir=$(azurite_dir)
  # The marker is written only after npm finished: an install cut off half-way is redone.
  if [ -f "$dir/.installed-$AZURITE_VERSION" ] && [ -x "$dir/node_modules/.bin/azurite-blob" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "==> installing Node.js and npm from the OS packages (for Azurite)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "==> installing Azurite $AZURITE_VERSION from npm into $dir" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  (cd "$dir" && npm install --no-audit --no-fund --silent --no-save "azurite@$AZURITE_VERSION" >/dev/null)
  touch "$dir/.installed-$AZURITE_VERSION"
}

stop_azurite() {
  if [ -n "${AZURITE_PID:-}" ]; then
    kill "$AZURITE_PID" 2>/dev/null || true
    wait "$AZURITE_PID" 2>/dev/null || true
    AZURITE_PID=
  fi
  if [ -n "${AZURITE_WORKSPACE:-}" ]; then
    rm -rf "$AZURITE_WORKSPACE"
    AZURITE_WORKSPACE=
  fi
}

# Starts the blob service unless AZURITE_BLOB_ENDPOINT already points at a running one.
ensure_azurite_running() {
  if [ -n "${AZURITE_BLOB_ENDPOINT:-}" ]; then
    return 0
  fi
  ensure_azurite_installed
  local dir port="" candidate
  dir=$(azurite_dir)
  for _ in $(seq 1 100); do
    candidate=$((20000 + RANDOM % 20000))
    # A refused connection means nobody listens there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      port=$candidate
      break
    fi
  done
  if [ -z "$port" ]; then
    echo "azurite: no free port found" >&2
    return 1
  fi
  AZURITE_WORKSPACE=$(mktemp -d /tmp/coremachine-azurite.XXXXXX)
  echo "==> starting Azurite blob service on 127.0.0.1:$port (in memory)" >&2
  # In memory, so nothing is left behind; run from a temp dir in case it writes anything anyway.
  (cd "$AZURITE_WORKSPACE" && exec "$dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 \
    --blobPort "$port" --inMemoryPersistence --disableTelemetry --silent \
    >"$AZURITE_WORKSPACE/azurite.log" 2>&1) &
  AZURITE_PID=$!
  local prev
  prev=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
  # shellcheck disable=SC2064
  trap "${prev:+$prev; }stop_azurite" EXIT
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export AZURITE_BLOB_ENDPOINT="http://127.0.0.1:$port/devstoreaccount1"
      return 0
    fi
    if ! kill -0 "$AZURITE_PID" 2>/dev/null; then
      echo "azurite exited during start-up:" >&2
      cat "$AZURITE_WORKSPACE/azurite.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "azurite did not listen on port $port within 30 s" >&2
  return 1
}
