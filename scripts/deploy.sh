#!/usr/bin/env bash
# Publishes CoreMachine to an existing Function App (created by scripts/infra/deploy-infra.sh).
#
#   scripts/deploy.sh <function-app> [--resource-group RG] [--zip FILE] [--dry-run]
#
# Uses the package of scripts/package.sh (built first if missing). With Azure Functions Core
# Tools installed: `func azure functionapp publish <app> --custom`, run from the unpacked package
# (so func zips exactly the package, on Linux, keeping mode 0755). Without func:
# `az functionapp deployment source config-zip`. Then it waits for /api/health to answer.
# --dry-run prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."

APP=
RG=${RESOURCE_GROUP:-}
ZIP=target/coremachine-functions.zip
DRY=
while [ $# -gt 0 ]; do
  case "$1" in
    --resource-group|-g) RG=$2; shift 2 ;;
    --zip) ZIP=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "deploy: unknown option $1" >&2; exit 2 ;;
    *) APP=$1; shift ;;
  esac
done
[ -n "$APP" ] || { echo "usage: $0 <function-app> [--resource-group RG] [--zip FILE] [--dry-run]" >&2; exit 2; }

run() {
  if [ -n "$DRY" ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

if [ ! -f "$ZIP" ]; then
  if [ -n "$DRY" ]; then
    run scripts/build-release.sh
    run scripts/package.sh
  else
    scripts/build-release.sh
    scripts/package.sh "target/azure-release/x86_64-unknown-linux-gnu/release/coremachine" "$ZIP"
  fi
fi

if command -v func >/dev/null 2>&1; then
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  run unzip -q "$ZIP" -d "$stage"
  echo "==> func azure functionapp publish $APP --custom (from the unpacked package)"
  if [ -n "$DRY" ]; then
    run sh -c "cd $stage && func azure functionapp publish $APP --custom"
  else
    (cd "$stage" && func azure functionapp publish "$APP" --custom)
  fi
else
  command -v az >/dev/null 2>&1 || [ -n "$DRY" ] || {
    echo "deploy: neither func (Azure Functions Core Tools) nor az (Azure CLI) is installed" >&2; exit 1; }
  if [ -z "$RG" ]; then
    if [ -n "$DRY" ]; then
      RG='<resource-group>'
    else
      RG=$(az functionapp list --query "[?name=='$APP'].resourceGroup | [0]" -o tsv)
      [ -n "$RG" ] || { echo "deploy: Function App $APP not found in the current subscription" >&2; exit 1; }
    fi
  fi
  echo "==> az functionapp deployment source config-zip ($APP in $RG)"
  run az functionapp deployment source config-zip --resource-group "$RG" --name "$APP" --src "$ZIP"
fi

health="https://$APP.azurewebsites.net/api/health"
if [ -n "$DRY" ]; then
  run curl -fsS "$health"
  exit 0
fi
echo "==> waiting for $health"
for _ in $(seq 1 60); do
  if out=$(curl -fsS --max-time 10 "$health" 2>/dev/null); then
    echo "$out"
    exit 0
  fi
  sleep 5
done
echo "deploy: $health did not answer within 5 minutes; check the Function App's log stream" >&2
exit 1
