# shellcheck shell=bash
# Sourced by test.sh: installs what the browser test (tests/browser.rs) needs, idempotently and
# quietly: Debian's `chromium` and playwright-core (npm) under tests/browser/node_modules.
# Set COREMACHINE_SKIP_BROWSER=1 to skip the install (the test then skips itself, loudly).
#
# Outputs: COREMACHINE_CHROMIUM (path of the browser binary).

ensure_browser_test_tools() {
  if [ "${COREMACHINE_SKIP_BROWSER:-}" = 1 ]; then
    echo "==> browser test disabled (COREMACHINE_SKIP_BROWSER=1)" >&2
    return 0
  fi
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if ! command -v chromium >/dev/null 2>&1; then
    echo "==> installing chromium from the OS packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "==> installing nodejs and npm from the OS packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
  fi
  if [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
    echo "==> installing playwright-core (npm)" >&2
    (cd "$root/tests/browser" && npm ci --no-audit --no-fund --silent >/dev/null)
  fi
  COREMACHINE_CHROMIUM=$(command -v chromium)
  export COREMACHINE_CHROMIUM
}
