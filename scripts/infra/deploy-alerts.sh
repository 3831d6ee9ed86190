#!/usr/bin/env bash
# Creates CoreMachine's alerts with the Azure CLI (az), in the resource group deploy-infra.sh made:
#
#   one action group (e-mail and/or webhook);
#   scheduled-query (log) alerts over Application Insights, each running a query from
#     scripts/kql/alerts/: failed jobs (per job type), stuck jobs (the janitor's findings), poison
#     reconciliations, unsendable messages, circuit breaker opened;
#   metric alerts on the Service Bus namespace: dead-lettered and active messages of the three
#     queues.
#
#   scripts/infra/deploy-alerts.sh --prefix NAME --alert-email ADDR [options]
#   scripts/infra/deploy-alerts.sh ... --dry-run      print every command, create nothing
#
# docs/operations.md ("Alerts") lists every alert, what it means and what to do.
#
# Options (environment variable in brackets):
#   --prefix NAME              the prefix given to deploy-infra.sh [CM_PREFIX]
#   --resource-group RG        default: NAME-rg [CM_RESOURCE_GROUP]
#   --alert-email ADDR         e-mail receiver of the action group [CM_ALERT_EMAIL]
#   --alert-webhook URL        webhook receiver (common alert schema) [CM_ALERT_WEBHOOK]
#                              (at least one of the two)
#   --failed-jobs-threshold N  failed jobs of one type in 15 minutes that fire the alert, default 0 [CM_FAILED_JOBS_THRESHOLD]
#   --backlog-threshold N      active messages of one queue (30-minute average) that fire, default 10000 [CM_BACKLOG_THRESHOLD]
set -euo pipefail

PREFIX=${CM_PREFIX:-}
RG=${CM_RESOURCE_GROUP:-}
EMAIL=${CM_ALERT_EMAIL:-}
WEBHOOK=${CM_ALERT_WEBHOOK:-}
FAILED_THRESHOLD=${CM_FAILED_JOBS_THRESHOLD:-0}
BACKLOG=${CM_BACKLOG_THRESHOLD:-10000}
DRY=

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --resource-group) RG=$2; shift 2 ;;
    --alert-email) EMAIL=$2; shift 2 ;;
    --alert-webhook) WEBHOOK=$2; shift 2 ;;
    --failed-jobs-threshold) FAILED_THRESHOLD=$2; shift 2 ;;
    --backlog-threshold) BACKLOG=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "deploy-alerts: unknown argument $1" >&2; exit 2 ;;
  esac
done

fail() { echo "deploy-alerts: $*" >&2; exit 1; }
[ -n "$PREFIX" ] || fail "--prefix is required (the one given to deploy-infra.sh)"
[[ "$PREFIX" =~ ^[a-z][a-z0-9]{2,15}$ ]] || fail "--prefix must be 3-16 lowercase letters/digits, starting with a letter"
[ -n "$EMAIL$WEBHOOK" ] || fail "--alert-email or --alert-webhook is required (who is told when an alert fires)"
[ -z "$EMAIL" ] || [[ "$EMAIL" =~ ^[^@[:space:]]+@[^@[:space:]]+$ ]] || fail "--alert-email must be an e-mail address, got '$EMAIL'"
[ -z "$WEBHOOK" ] || [[ "$WEBHOOK" =~ ^https:// ]] || fail "--alert-webhook must be an https:// URL"
[[ "$FAILED_THRESHOLD" =~ ^[0-9]+$ ]] || fail "--failed-jobs-threshold must be a whole number, got '$FAILED_THRESHOLD'"
[[ "$BACKLOG" =~ ^[0-9]+$ ]] || fail "--backlog-threshold must be a whole number, got '$BACKLOG'"
RG=${RG:-$PREFIX-rg}

AI=$PREFIX-ai
SB=$PREFIX-sb
AG=$PREFIX-alerts
QUEUES="geospatial-jobs or geospatial-tasks or geospatial-poison"
KQL_DIR=$(cd "$(dirname "$0")/../kql/alerts" && pwd)

# shellcheck source=az-run.sh
. "$(dirname "$0")/az-run.sh"

[ -n "$DRY" ] || command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is not installed"

echo "==> action group $AG"
RECEIVERS=()
[ -z "$EMAIL" ] || RECEIVERS+=(--action email oncall-email "$EMAIL")
[ -z "$WEBHOOK" ] || RECEIVERS+=(--action webhook oncall-webhook "$WEBHOOK" usecommonalertschema)
run az monitor action-group create --resource-group "$RG" --name "$AG" --short-name "${PREFIX:0:12}" \
  "${RECEIVERS[@]}" --output none
AG_ID=$(query "<action-group-id>" az monitor action-group show --resource-group "$RG" --name "$AG" \
  --query id --output tsv)
AI_ID=$(query "<app-insights-id>" az monitor app-insights component show --resource-group "$RG" \
  --app "$AI" --query id --output tsv)
SB_ID=$(query "<service-bus-namespace-id>" az servicebus namespace show --resource-group "$RG" \
  --name "$SB" --query id --output tsv)

# A log alert: NAME FILE MEASURE DIMENSION THRESHOLD SEVERITY WINDOW DESCRIPTION. It runs
# scripts/kql/alerts/FILE.kql every 5 minutes over WINDOW and fires for each value of DIMENSION
# whose MEASURE (summed) is above THRESHOLD.
log_alert() {
  local name=$1 file=$2 measure=$3 dimension=$4 threshold=$5 severity=$6 window=$7 description=$8
  [ -f "$KQL_DIR/$file.kql" ] || fail "no query $KQL_DIR/$file.kql"
  run az monitor scheduled-query create --resource-group "$RG" --name "$PREFIX-$name" \
    --scopes "$AI_ID" --description "$description (query: scripts/kql/alerts/$file.kql; runbook: docs/operations.md, Alerts)" \
    --severity "$severity" --evaluation-frequency 5m --window-size "$window" \
    --condition "total '$measure' from 'q' > $threshold where $dimension includes *" \
    --condition-query "q=$(cat "$KQL_DIR/$file.kql")" \
    --action-groups "$AG_ID" --auto-mitigate true --output none
}

echo "==> log alerts over $AI (scripts/kql/alerts)"
run az extension add --name scheduled-query --upgrade --only-show-errors
log_alert failed-jobs failed_jobs failed_jobs job_type "$FAILED_THRESHOLD" 2 15m \
  "Jobs failed"
log_alert stuck-jobs stuck_jobs findings checkpoint 0 2 30m \
  "The janitor found stuck work (dead workers, stalled stages, lost stage messages)"
log_alert poison-reconciliations poison_reconciliations messages checkpoint 0 2 15m \
  "Messages reached the poison queue and had to be reconciled"
log_alert unsendable-messages unsendable_messages messages queue 0 1 15m \
  "The broker refused messages for good; their jobs were failed"
log_alert circuit-open circuit_open opened endpoint 0 2 15m \
  "A circuit breaker opened: an Azure endpoint is failing"

echo "==> metric alerts on $SB"
run az monitor metrics alert create --resource-group "$RG" --name "$PREFIX-queue-dead-letters" \
  --scopes "$SB_ID" --description "Dead-lettered messages in a queue (runbook: docs/operations.md, Alerts)" \
  --condition "max DeadletteredMessages > 0 where EntityName includes $QUEUES" \
  --window-size 15m --evaluation-frequency 5m --severity 1 --action "$AG_ID" --output none
run az monitor metrics alert create --resource-group "$RG" --name "$PREFIX-queue-backlog" \
  --scopes "$SB_ID" --description "Active messages piling up in a queue (runbook: docs/operations.md, Alerts)" \
  --condition "avg ActiveMessages > $BACKLOG where EntityName includes $QUEUES" \
  --window-size 30m --evaluation-frequency 5m --severity 2 --action "$AG_ID" --output none

echo "==> done: 5 log alerts and 2 metric alerts notify action group $AG"
