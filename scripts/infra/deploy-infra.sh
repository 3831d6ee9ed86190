#!/usr/bin/env bash
# Creates everything CoreMachine needs in a fresh subscription, with the Azure CLI (az):
#
#   resource group; Log Analytics workspace + Application Insights (workspace-based);
#   storage account (AzureWebJobsStorage); Service Bus namespace with the queues
#     geospatial-poison, and geospatial-jobs / geospatial-tasks (lock duration, max delivery
#     count, duplicate detection with a 10-minute window, dead letters forwarded to
#     geospatial-poison); Azure Database for PostgreSQL flexible server (Entra ID
#     authentication, an Entra admin, TLS enforced) with the database; a Linux Premium plan and
#     Function App (custom handler, system-assigned identity); role assignments Azure Service Bus
#     Data Receiver and Data Sender for the identity; and every app setting the binary reads.
#
#   scripts/infra/deploy-infra.sh --prefix NAME --location LOC --pg-admin UPN [options]
#   scripts/infra/deploy-infra.sh ... --dry-run      print every command, create nothing
#
# Options (environment variable in brackets):
#   --prefix NAME            base name of every resource, lowercase letters/digits, <= 16 chars [CM_PREFIX]
#   --location LOC           Azure region, e.g. westeurope [CM_LOCATION]
#   --resource-group RG      default: NAME-rg [CM_RESOURCE_GROUP]
#   --pg-admin UPN           Entra user (or group with --pg-admin-type Group) made PostgreSQL admin [CM_PG_ADMIN]
#   --pg-admin-object-id ID  its object id (default: looked up with az ad) [CM_PG_ADMIN_OBJECT_ID]
#   --pg-admin-type T        User | Group | ServicePrincipal (default User)
#   --sb-sku SKU             Standard (default) | Premium [CM_SB_SKU]
#   --plan-sku SKU           Function plan, default EP1 (Elastic Premium) [CM_PLAN_SKU]
#   --max-delivery-count N   queue MaxDeliveryCount, default 5 [CM_MAX_DELIVERY_COUNT]
#   --lock-duration ISO      queue lock duration, default PT5M (the Service Bus maximum) [CM_LOCK_DURATION]
#   --data-storage NAME      existing storage account whose blobs the blob job types read
#                            (list_container_contents): Storage Blob Data Reader for the identity,
#                            STORAGE_ACCOUNT_NAME set [CM_DATA_STORAGE]; without it those jobs fail
#                            with "Blob Storage is not configured"
#   --data-storage-rg RG     its resource group (default: the resource group above) [CM_DATA_STORAGE_RG]
#   --alert-email ADDR       also create the alerts (scripts/infra/deploy-alerts.sh), told to ADDR
#   --alert-webhook URL      ... and/or to this webhook
#
# Afterwards: create the PostgreSQL principal for the Function App's identity and run the
# migrations (docs/operations.md, "Deploy from zero"), then scripts/deploy.sh <app>.
set -euo pipefail

PREFIX=${CM_PREFIX:-}
LOCATION=${CM_LOCATION:-}
RG=${CM_RESOURCE_GROUP:-}
PG_ADMIN=${CM_PG_ADMIN:-}
PG_ADMIN_OID=${CM_PG_ADMIN_OBJECT_ID:-}
PG_ADMIN_TYPE=User
SB_SKU=${CM_SB_SKU:-Standard}
PLAN_SKU=${CM_PLAN_SKU:-EP1}
MAX_DELIVERY=${CM_MAX_DELIVERY_COUNT:-5}
LOCK=${CM_LOCK_DURATION:-PT5M}
DATA_STORAGE=${CM_DATA_STORAGE:-}
DATA_RG=${CM_DATA_STORAGE_RG:-}
ALERT_ARGS=()
DRY=

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --location) LOCATION=$2; shift 2 ;;
    --resource-group) RG=$2; shift 2 ;;
    --pg-admin) PG_ADMIN=$2; shift 2 ;;
    --pg-admin-object-id) PG_ADMIN_OID=$2; shift 2 ;;
    --pg-admin-type) PG_ADMIN_TYPE=$2; shift 2 ;;
    --sb-sku) SB_SKU=$2; shift 2 ;;
    --plan-sku) PLAN_SKU=$2; shift 2 ;;
    --max-delivery-count) MAX_DELIVERY=$2; shift 2 ;;
    --lock-duration) LOCK=$2; shift 2 ;;
    --data-storage) DATA_STORAGE=$2; shift 2 ;;
    --data-storage-rg) DATA_RG=$2; shift 2 ;;
    --alert-email) ALERT_ARGS+=(--alert-email "$2"); shift 2 ;;
    --alert-webhook) ALERT_ARGS+=(--alert-webhook "$2"); shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "deploy-infra: unknown argument $1" >&2; exit 2 ;;
  esac
done

fail() { echo "deploy-infra: $*" >&2; exit 1; }
[ -n "$PREFIX" ] || fail "--prefix is required"
[[ "$PREFIX" =~ ^[a-z][a-z0-9]{2,15}$ ]] || fail "--prefix must be 3-16 lowercase letters/digits, starting with a letter (storage account names allow nothing else)"
[ -n "$LOCATION" ] || fail "--location is required"
[ -n "$PG_ADMIN" ] || fail "--pg-admin is required (the Entra user or group that administers PostgreSQL)"
case "$SB_SKU" in Standard|Premium) ;; *) fail "--sb-sku must be Standard or Premium (duplicate detection needs Standard or higher)" ;; esac
RG=${RG:-$PREFIX-rg}
DATA_RG=${DATA_RG:-$RG}
[ -z "$DATA_STORAGE" ] || [[ "$DATA_STORAGE" =~ ^[a-z0-9]{3,24}$ ]] || fail "--data-storage must be a storage account name: 3-24 lowercase letters/digits"

LOGS=$PREFIX-logs
AI=$PREFIX-ai
STORAGE=${PREFIX}st
SB=$PREFIX-sb
PG=$PREFIX-pg
DB=coremachine
PLAN=$PREFIX-plan
APP=$PREFIX-func
JOBS=geospatial-jobs
TASKS=geospatial-tasks
POISON=geospatial-poison

# shellcheck source=az-run.sh
. "$(dirname "$0")/az-run.sh"

[ -n "$DRY" ] || command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is not installed"

echo "==> resource group $RG in $LOCATION"
run az group create --name "$RG" --location "$LOCATION" --output none

echo "==> Log Analytics $LOGS and Application Insights $AI"
run az extension add --name application-insights --upgrade --only-show-errors
run az monitor log-analytics workspace create --resource-group "$RG" --workspace-name "$LOGS" \
  --location "$LOCATION" --retention-time 30 --output none
LOGS_ID=$(query "<log-analytics-id>" az monitor log-analytics workspace show --resource-group "$RG" \
  --workspace-name "$LOGS" --query id --output tsv)
run az monitor app-insights component create --resource-group "$RG" --app "$AI" --location "$LOCATION" \
  --kind web --application-type web --workspace "$LOGS_ID" --output none

echo "==> storage account $STORAGE (AzureWebJobsStorage)"
run az storage account create --resource-group "$RG" --name "$STORAGE" --location "$LOCATION" \
  --sku Standard_LRS --kind StorageV2 --min-tls-version TLS1_2 --allow-blob-public-access false --output none

echo "==> Service Bus namespace $SB ($SB_SKU) and queues"
run az servicebus namespace create --resource-group "$RG" --name "$SB" --location "$LOCATION" \
  --sku "$SB_SKU" --output none
# The poison queue first: the other two forward their dead letters to it.
run az servicebus queue create --resource-group "$RG" --namespace-name "$SB" --name "$POISON" \
  --lock-duration "$LOCK" --max-delivery-count 10 --default-message-time-to-live P14D --output none
for q in "$JOBS" "$TASKS"; do
  # Duplicate detection can only be chosen when a queue is created.
  run az servicebus queue create --resource-group "$RG" --namespace-name "$SB" --name "$q" \
    --lock-duration "$LOCK" --max-delivery-count "$MAX_DELIVERY" \
    --enable-duplicate-detection true --duplicate-detection-history-time-window PT10M \
    --enable-dead-lettering-on-message-expiration true \
    --forward-dead-lettered-messages-to "$POISON" --output none
done
SB_ID=$(query "<service-bus-namespace-id>" az servicebus namespace show --resource-group "$RG" \
  --name "$SB" --query id --output tsv)

echo "==> PostgreSQL flexible server $PG (Entra ID authentication, TLS enforced)"
if [ -z "$PG_ADMIN_OID" ]; then
  case "$PG_ADMIN_TYPE" in
    User) PG_ADMIN_OID=$(query "<admin-object-id>" az ad user show --id "$PG_ADMIN" --query id --output tsv) ;;
    Group) PG_ADMIN_OID=$(query "<admin-object-id>" az ad group show --group "$PG_ADMIN" --query id --output tsv) ;;
    *) fail "--pg-admin-object-id is required for --pg-admin-type $PG_ADMIN_TYPE" ;;
  esac
fi
run az postgres flexible-server create --resource-group "$RG" --name "$PG" --location "$LOCATION" \
  --version 16 --tier Burstable --sku-name Standard_B2s --storage-size 32 \
  --microsoft-entra-auth Enabled --password-auth Disabled \
  --public-access 0.0.0.0 --yes --output none
run az postgres flexible-server microsoft-entra-admin create --resource-group "$RG" --server-name "$PG" \
  --display-name "$PG_ADMIN" --object-id "$PG_ADMIN_OID" --type "$PG_ADMIN_TYPE" --output none
run az postgres flexible-server parameter set --resource-group "$RG" --server-name "$PG" \
  --name require_secure_transport --value on --output none
run az postgres flexible-server db create --resource-group "$RG" --server-name "$PG" --database-name "$DB" --output none

echo "==> Function App $APP (Linux, $PLAN_SKU, custom handler, system-assigned identity)"
run az functionapp plan create --resource-group "$RG" --name "$PLAN" --location "$LOCATION" \
  --sku "$PLAN_SKU" --is-linux --output none
run az functionapp create --resource-group "$RG" --name "$APP" --plan "$PLAN" \
  --storage-account "$STORAGE" --os-type Linux --runtime custom --functions-version 4 \
  --app-insights "$AI" --assign-identity '[system]' --output none
PRINCIPAL=$(query "<function-app-principal-id>" az functionapp identity show --resource-group "$RG" \
  --name "$APP" --query principalId --output tsv)

echo "==> role assignments on $SB for the Function App's identity"
for role in "Azure Service Bus Data Receiver" "Azure Service Bus Data Sender"; do
  run az role assignment create --assignee-object-id "$PRINCIPAL" --assignee-principal-type ServicePrincipal \
    --role "$role" --scope "$SB_ID" --output none
done

BLOB_SETTINGS=()
if [ -n "$DATA_STORAGE" ]; then
  echo "==> Storage Blob Data Reader on $DATA_STORAGE (the blobs the blob job types read)"
  DATA_ID=$(query "<data-storage-id>" az storage account show --resource-group "$DATA_RG" \
    --name "$DATA_STORAGE" --query id --output tsv)
  run az role assignment create --assignee-object-id "$PRINCIPAL" --assignee-principal-type ServicePrincipal \
    --role "Storage Blob Data Reader" --scope "$DATA_ID" --output none
  BLOB_SETTINGS=("STORAGE_ACCOUNT_NAME=$DATA_STORAGE")
else
  echo "==> no --data-storage: the blob job types stay unconfigured (rerun with --data-storage NAME)"
fi

echo "==> app settings"
# Every setting the binary reads in Azure (docs/operations.md lists them all with defaults).
# APPLICATIONINSIGHTS_CONNECTION_STRING and AzureWebJobsStorage are set by functionapp create.
run az functionapp config appsettings set --resource-group "$RG" --name "$APP" --output none --settings \
  "FUNCTIONS_WORKER_RUNTIME=custom" \
  "SCM_DO_BUILD_DURING_DEPLOYMENT=false" \
  "ServiceBusConnection__fullyQualifiedNamespace=$SB.servicebus.windows.net" \
  "ServiceBusConnection__credential=managedidentity" \
  "SERVICE_BUS_JOBS_QUEUE=$JOBS" \
  "SERVICE_BUS_TASKS_QUEUE=$TASKS" \
  "SERVICE_BUS_POISON_QUEUE=$POISON" \
  "SERVICE_BUS_MAX_BATCH_MESSAGES=100" \
  "SERVICE_BUS_MAX_BATCH_BYTES=$([ "$SB_SKU" = Premium ] && echo 1048576 || echo 262144)" \
  "SERVICE_BUS_MAX_MESSAGE_BYTES=$([ "$SB_SKU" = Premium ] && echo 1048576 || echo 262144)" \
  "SERVICE_BUS_SEND_CONCURRENCY=4" \
  "POSTGIS_HOST=$PG.postgres.database.azure.com" \
  "POSTGIS_PORT=5432" \
  "POSTGIS_DATABASE=$DB" \
  "POSTGIS_USER=$APP" \
  "USE_MANAGED_IDENTITY=true" \
  "DATABASE_SSLMODE=verify-full" \
  "DATABASE_SSL_ROOT_CERT=system" \
  "DB_POOL_MAX_SIZE=16" \
  "DB_POOL_MAX_LIFETIME_S=1800" \
  "MIGRATE_ON_START=true" \
  "TASK_MAX_RETRIES=3" \
  "TASK_RETRY_BASE_DELAY_S=5" \
  "TASK_RETRY_MAX_DELAY_S=300" \
  "TASK_LEASE_S=600" \
  "OUTBOX_REPUBLISH_AFTER_S=60" \
  "JANITOR_STUCK_AFTER_S=900" \
  "RUST_LOG=info" \
  "${BLOB_SETTINGS[@]}"

if [ ${#ALERT_ARGS[@]} -gt 0 ]; then
  "$(dirname "$0")/deploy-alerts.sh" --prefix "$PREFIX" --resource-group "$RG" ${DRY:+--dry-run} "${ALERT_ARGS[@]}"
else
  echo "==> no --alert-email/--alert-webhook: no alerts (scripts/infra/deploy-alerts.sh creates them later)"
fi

cat <<EOF
==> done. Next steps (docs/operations.md, "Deploy from zero"):
  1. As the Entra admin ($PG_ADMIN), create the identity's database role:
       psql "host=$PG.postgres.database.azure.com dbname=postgres user=$PG_ADMIN sslmode=require password=\$(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv)" \\
         -c "select * from pgaadauth_create_principal('$APP', false, false);"
     and let it create the schema in the database:
       psql "host=$PG.postgres.database.azure.com dbname=$DB user=$PG_ADMIN sslmode=require password=<same token>" \\
         -c 'GRANT CREATE ON DATABASE $DB TO "$APP";'
  2. Deploy the code:  scripts/deploy.sh $APP --resource-group $RG
     (MIGRATE_ON_START=true: the first start applies the migrations as the app's identity, which
     then owns schema app.)
EOF
