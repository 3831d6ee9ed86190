//! Settings, read once from environment variables and validated at start-up.
//!
//! Every variable is listed with an example in `local.settings.json.example`. Parsing errors name
//! the variable and the value that was wrong; secrets are never echoed.

use std::time::Duration;

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is absent.
    #[error("setting {name} is required: {hint}")]
    Missing {
        /// Variable name.
        name: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A variable is present but cannot be used.
    #[error("setting {name} is invalid: {reason}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// What is wrong (never the secret itself).
        reason: String,
    },
}

/// How messages leave the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportMode {
    /// Local mode: queues are tables in PostgreSQL, delivered by the host emulator.
    LocalQueue,
    /// Azure: Service Bus REST API.
    ServiceBus,
}

impl TransportMode {
    /// `janitor --once`: Service Bus when a Service Bus connection is configured (so republished
    /// outbox rows reach the real queues), else the local queue.
    pub fn for_janitor() -> Self {
        let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
        if set("ServiceBusConnection") || set("ServiceBusConnection__fullyQualifiedNamespace") {
            TransportMode::ServiceBus
        } else {
            TransportMode::LocalQueue
        }
    }
}

/// Queue names (the earlier implementation's names by default).
#[derive(Debug, Clone)]
pub struct QueueNames {
    /// Queue carrying job (stage) messages.
    pub jobs: String,
    /// Queue carrying task messages.
    pub tasks: String,
    /// Queue receiving dead letters of the two above.
    pub poison: String,
}

impl Default for QueueNames {
    fn default() -> Self {
        Self {
            jobs: "geospatial-jobs".into(),
            tasks: "geospatial-tasks".into(),
            poison: "geospatial-poison".into(),
        }
    }
}

/// Task retry policy (DESIGN §4).
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Retries after the first attempt (`TASK_MAX_RETRIES`, default 3).
    pub max_retries: u32,
    /// First backoff (`TASK_RETRY_BASE_DELAY_S`, default 5 s).
    pub base_delay: Duration,
    /// Backoff cap (`TASK_RETRY_MAX_DELAY_S`, default 300 s).
    pub max_delay: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(300),
        }
    }
}

/// Local queue (Service Bus stand-in) entity settings.
#[derive(Debug, Clone)]
pub struct LocalQueueSettings {
    /// Peek-lock duration (`LOCAL_QUEUE_LOCK_DURATION_S`, default 300 s as on the Service Bus queues).
    pub lock_duration: Duration,
    /// Deliveries before dead-lettering (`LOCAL_QUEUE_MAX_DELIVERY_COUNT`, default 5).
    pub max_delivery_count: i32,
    /// Idle poll interval of the emulator (`LOCAL_QUEUE_POLL_MS`, default 200 ms).
    pub poll_interval: Duration,
}

impl Default for LocalQueueSettings {
    fn default() -> Self {
        Self {
            lock_duration: Duration::from_secs(300),
            max_delivery_count: 5,
            poll_interval: Duration::from_millis(200),
        }
    }
}

/// How job types that read blobs reach Azure Blob Storage.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageSettings {
    /// `AZURE_STORAGE_CONNECTION_STRING`: account key (Shared Key signing) or SAS; what Azurite and
    /// local development use. Validated when read; never printed.
    ConnectionString(String),
    /// `STORAGE_ACCOUNT_NAME`: managed identity, token scope `https://storage.azure.com/.default`.
    ManagedIdentity {
        /// Storage account name.
        account_name: String,
        /// `STORAGE_MANAGED_IDENTITY_CLIENT_ID`: a user-assigned identity (None: system-assigned).
        client_id: Option<String>,
    },
}

impl std::fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageSettings::ConnectionString(_) => f.write_str("ConnectionString(***)"),
            StorageSettings::ManagedIdentity {
                account_name,
                client_id,
            } => f
                .debug_struct("ManagedIdentity")
                .field("account_name", account_name)
                .field("client_id", client_id)
                .finish(),
        }
    }
}

impl StorageSettings {
    /// Reads the storage variables through `get`; None when neither is set. A connection string
    /// wins over an account name.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(cs) = set("AZURE_STORAGE_CONNECTION_STRING") {
            crate::storage::ConnectionString::parse(&cs).map_err(|e| ConfigError::Invalid {
                name: "AZURE_STORAGE_CONNECTION_STRING",
                reason: e.to_string(),
            })?;
            return Ok(Some(Self::ConnectionString(cs)));
        }
        let Some(account_name) = set("STORAGE_ACCOUNT_NAME") else {
            return Ok(None);
        };
        let account_name = account_name.trim().to_string();
        if !(3..=24).contains(&account_name.len())
            || !account_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(ConfigError::Invalid {
                name: "STORAGE_ACCOUNT_NAME",
                reason: format!(
                    "{account_name:?} is not a storage account name (3-24 lowercase letters and digits)"
                ),
            });
        }
        Ok(Some(Self::ManagedIdentity {
            account_name,
            client_id: set("STORAGE_MANAGED_IDENTITY_CLIENT_ID").map(|c| c.trim().to_string()),
        }))
    }
}

/// All settings of one process. `Debug` shows the database URL without its password.
#[derive(Clone)]
pub struct Settings {
    /// libpq-style URL of the state database (`DATABASE_URL`).
    pub database_url: String,
    /// Maximum pooled connections (`DB_POOL_MAX_SIZE`, default 16).
    pub db_pool_size: usize,
    /// Queue names.
    pub queues: QueueNames,
    /// Transport.
    pub transport: TransportMode,
    /// Task retries.
    pub retry: RetrySettings,
    /// How long a claimed task is leased before the janitor may re-queue it (`TASK_LEASE_S`, default 600).
    pub task_lease: Duration,
    /// Local queue behaviour.
    pub local_queue: LocalQueueSettings,
    /// Age after which an unpublished outbox row is republished by the janitor (`OUTBOX_REPUBLISH_AFTER_S`, default 60).
    pub outbox_republish_after: Duration,
    /// How long a queued job may sit untouched before the janitor re-drives its stage message
    /// (`JANITOR_STUCK_AFTER_S`, default 900 s: longer than the longest retry backoff).
    pub janitor_stuck_after: Duration,
    /// Entra ID (managed identity) login to PostgreSQL (`USE_MANAGED_IDENTITY`, `MANAGED_IDENTITY_CLIENT_ID`).
    pub db_identity: Option<crate::store::connect::EntraAuth>,
    /// Pooled connections are retired after this (`DB_POOL_MAX_LIFETIME_S`, default 1800 s).
    pub db_pool_max_lifetime: Duration,
    /// Service Bus settings (Azure mode only).
    pub service_bus: Option<crate::transport::service_bus::ServiceBusSettings>,
    /// HTTP API keys and the admin switch.
    pub http: HttpSettings,
    /// The HTTP server's timeouts and connection limit (`src/local/server.rs`).
    pub server: ServerSettings,
    /// `serve` applies pending migrations before listening (`MIGRATE_ON_START`, default false);
    /// the Function App's identity then owns the schema it creates.
    pub migrate_on_start: bool,
    /// Blob Storage access for job types that read blobs (None: not configured).
    pub storage: Option<StorageSettings>,
    /// Largest invocation a queue-trigger route reads (`TRIGGER_MAX_BODY_BYTES`, default
    /// [`TRIGGER_MAX_BODY_BYTES`]); a larger one is recorded in `message_failures` and
    /// acknowledged.
    pub trigger_max_body_bytes: usize,
    /// How many messages of one batched invocation (`"cardinality": "many"`) are handled at
    /// once (`TRIGGER_BATCH_CONCURRENCY`, default 16).
    pub trigger_batch_concurrency: usize,
    /// How long finished jobs and events are kept (`RETENTION_*`, src/retention.rs).
    pub retention: crate::retention::RetentionSettings,
}

/// What a 100 MB Premium Service Bus message becomes in the host's invocation: base64 (4/3) plus
/// the Metadata (application properties and the broker's fields), rounded up: 150 MiB.
pub const TRIGGER_MAX_BODY_BYTES: usize = 150 * 1024 * 1024;

impl Settings {
    /// Settings for tests and local mode with the given database.
    pub fn local(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            db_pool_size: 16,
            queues: QueueNames::default(),
            transport: TransportMode::LocalQueue,
            retry: RetrySettings::default(),
            task_lease: Duration::from_secs(600),
            local_queue: LocalQueueSettings::default(),
            outbox_republish_after: Duration::from_secs(60),
            janitor_stuck_after: Duration::from_secs(900),
            db_identity: None,
            db_pool_max_lifetime: Duration::from_secs(1800),
            service_bus: None,
            http: HttpSettings::default(),
            server: ServerSettings::default(),
            migrate_on_start: false,
            storage: None,
            trigger_max_body_bytes: TRIGGER_MAX_BODY_BYTES,
            trigger_batch_concurrency: 16,
            retention: crate::retention::RetentionSettings::default(),
        }
    }

    /// Reads the settings from the process environment.
    pub fn from_env(transport: TransportMode) -> Result<Self, ConfigError> {
        Self::from_lookup(transport, |k| std::env::var(k).ok())
    }

    /// Reads the settings through `get` (testable without touching the environment).
    pub fn from_lookup(
        transport: TransportMode,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // DATABASE_URL or POSTGIS_*, TLS, managed identity (store/connect.rs).
        let db = crate::store::connect::DatabaseSettings::from_lookup(&get)?;
        let database_url = db.url.clone();
        let mut s = Self::local(database_url);
        s.transport = transport;
        s.db_identity = db.entra;
        s.db_pool_max_lifetime = db.max_lifetime;
        s.migrate_on_start = crate::store::connect::flag(&get, "MIGRATE_ON_START")?;
        if s.transport == TransportMode::ServiceBus {
            s.service_bus =
                Some(crate::transport::service_bus::ServiceBusSettings::from_lookup(&get)?);
        }
        s.db_pool_size = num(&get, "DB_POOL_MAX_SIZE", 16, 1, 1000)? as usize;
        s.trigger_max_body_bytes = num(
            &get,
            "TRIGGER_MAX_BODY_BYTES",
            TRIGGER_MAX_BODY_BYTES as i64,
            64 * 1024,
            1 << 30,
        )? as usize;
        s.trigger_batch_concurrency = num(&get, "TRIGGER_BATCH_CONCURRENCY", 16, 1, 1000)? as usize;
        // An empty value is no value (the example settings list the earlier names empty).
        let set = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(q) = set("SERVICE_BUS_JOBS_QUEUE").or_else(|| set("JOB_PROCESSING_QUEUE")) {
            s.queues.jobs = q;
        }
        if let Some(q) = set("SERVICE_BUS_TASKS_QUEUE").or_else(|| set("TASK_PROCESSING_QUEUE")) {
            s.queues.tasks = q;
        }
        if let Some(q) = set("SERVICE_BUS_POISON_QUEUE") {
            s.queues.poison = q;
        }
        s.retry.max_retries = num(&get, "TASK_MAX_RETRIES", 3, 0, 10)? as u32;
        s.retry.base_delay =
            Duration::from_secs_f64(num_f(&get, "TASK_RETRY_BASE_DELAY_S", 5.0, 0.0, 3600.0)?);
        s.retry.max_delay =
            Duration::from_secs_f64(num_f(&get, "TASK_RETRY_MAX_DELAY_S", 300.0, 0.0, 86400.0)?);
        if s.retry.max_delay < s.retry.base_delay {
            return Err(ConfigError::Invalid {
                name: "TASK_RETRY_MAX_DELAY_S",
                reason: "must not be smaller than TASK_RETRY_BASE_DELAY_S".into(),
            });
        }
        s.task_lease = Duration::from_secs_f64(num_f(&get, "TASK_LEASE_S", 600.0, 1.0, 86400.0)?);
        s.local_queue.lock_duration = Duration::from_secs_f64(num_f(
            &get,
            "LOCAL_QUEUE_LOCK_DURATION_S",
            300.0,
            0.1,
            86400.0,
        )?);
        s.local_queue.max_delivery_count =
            num(&get, "LOCAL_QUEUE_MAX_DELIVERY_COUNT", 5, 1, 2000)? as i32;
        s.local_queue.poll_interval =
            Duration::from_millis(num(&get, "LOCAL_QUEUE_POLL_MS", 200, 1, 60_000)? as u64);
        s.outbox_republish_after =
            Duration::from_secs_f64(num_f(&get, "OUTBOX_REPUBLISH_AFTER_S", 60.0, 0.0, 86400.0)?);
        s.janitor_stuck_after = Duration::from_secs_f64(num_f(
            &get,
            "JANITOR_STUCK_AFTER_S",
            900.0,
            0.0,
            7.0 * 86400.0,
        )?);
        s.http = HttpSettings::from_lookup(&get)?;
        s.server = ServerSettings::from_lookup(&get)?;
        s.storage = StorageSettings::from_lookup(&get)?;
        s.retention = crate::retention::RetentionSettings::from_lookup(&get)?;
        Ok(s)
    }
}

/// A key or token: compared in constant time and never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// Whether `candidate` equals the secret (time independent of where they differ).
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
    /// The value, for sending it (never for logging).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// HTTP keys and switches. In Azure the Functions host checks keys itself; in local mode the host
/// emulator checks them against these (`src/local/auth.rs`). With no key configured, local mode
/// does not check keys, as `func start` does not.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// Keys accepted at `authLevel: function` (`LOCAL_FUNCTION_KEYS`, comma-separated).
    pub function_keys: Vec<Secret>,
    /// The master key, accepted at every level and the only one at `admin` (`LOCAL_ADMIN_KEY`).
    pub admin_key: Option<Secret>,
    /// Whether the admin routes (migrations, redeploy) run at all (`COREMACHINE_ADMIN_ENABLED=true`).
    pub admin_enabled: bool,
}

impl HttpSettings {
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let function_keys = get("LOCAL_FUNCTION_KEYS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();
        let admin_key = get("LOCAL_ADMIN_KEY")
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .map(Secret::new);
        // The one boolean parser of the settings (true/false, 1/0, yes/no, on/off).
        let admin_enabled = crate::store::connect::flag(&get, "COREMACHINE_ADMIN_ENABLED")?;
        Ok(Self {
            function_keys,
            admin_key,
            admin_enabled,
        })
    }

    /// Whether any key is configured (local mode then checks keys like the host).
    pub fn keys_configured(&self) -> bool {
        !self.function_keys.is_empty() || self.admin_key.is_some()
    }
}

/// The HTTP server's limits. The Functions host keeps connections to the handler open and holds
/// one open for as long as an invocation runs (minutes), so no limit here counts the time a
/// request spends in a handler: only a client that is slow to *send* (head or body) or a
/// connection that sits idle between requests is cut.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// From a request's first byte to its complete head (`HTTP_HEADER_READ_TIMEOUT_S`, 30 s).
    pub header_read_timeout: Duration,
    /// From the head to the last byte of the body (`HTTP_BODY_READ_TIMEOUT_S`, 60 s).
    pub body_read_timeout: Duration,
    /// A connection with no request in flight and no byte received (`HTTP_IDLE_TIMEOUT_S`,
    /// 300 s: longer than the host's HTTP client keeps an idle connection, so the host is the
    /// side that closes idle connections and never sends on one being closed here).
    pub idle_timeout: Duration,
    /// Open connections at most; more are answered 503 and closed (`HTTP_MAX_CONNECTIONS`, 1024).
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
        }
    }
}

impl ServerSettings {
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secs = |name, default| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs_f64(num_f(
                get, name, default, 0.05, 86400.0,
            )?))
        };
        Ok(Self {
            header_read_timeout: secs("HTTP_HEADER_READ_TIMEOUT_S", 30.0)?,
            body_read_timeout: secs("HTTP_BODY_READ_TIMEOUT_S", 60.0)?,
            idle_timeout: secs("HTTP_IDLE_TIMEOUT_S", 300.0)?,
            max_connections: num(get, "HTTP_MAX_CONNECTIONS", 1024, 1, 1_000_000)? as usize,
        })
    }
}

pub(crate) fn num(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => {
            let n: i64 = v.trim().parse().map_err(|_| ConfigError::Invalid {
                name,
                reason: format!("expected an integer, got {v:?}"),
            })?;
            if n < min || n > max {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("{n} is outside {min}..={max}"),
                });
            }
            Ok(n)
        }
    }
}

pub(crate) fn num_f(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: f64,
    min: f64,
    max: f64,
) -> Result<f64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => {
            let n: f64 = v.trim().parse().map_err(|_| ConfigError::Invalid {
                name,
                reason: format!("expected a number, got {v:?}"),
            })?;
            if !(min..=max).contains(&n) {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("{n} is outside {min}..={max}"),
                });
            }
            Ok(n)
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field(
                "database_url",
                &crate::store::connect::redact_url(&self.database_url),
            )
            .field("db_pool_size", &self.db_pool_size)
            .field("queues", &self.queues)
            .field("transport", &self.transport)
            .field("retry", &self.retry)
            .field("task_lease", &self.task_lease)
            .field("local_queue", &self.local_queue)
            .field("outbox_republish_after", &self.outbox_republish_after)
            .field("janitor_stuck_after", &self.janitor_stuck_after)
            .field("db_identity", &self.db_identity)
            .field("db_pool_max_lifetime", &self.db_pool_max_lifetime)
            .field("service_bus", &self.service_bus)
            .field("http", &self.http)
            .field("server", &self.server)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("storage", &self.storage)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_database_password() {
        let s = Settings::local("postgres://app:s3cr3t-pw@db.example.com:5432/geo?sslmode=require");
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(
            shown.contains("db.example.com"),
            "the rest of the URL stays: {shown}"
        );
    }

    #[test]
    fn server_limits_have_defaults_and_refuse_nonsense() {
        let none = |_: &str| None;
        assert_eq!(
            ServerSettings::from_lookup(&none).unwrap(),
            ServerSettings::default()
        );
        let set = |k: &str| (k == "HTTP_IDLE_TIMEOUT_S").then(|| "2.5".to_string());
        assert_eq!(
            ServerSettings::from_lookup(&set).unwrap().idle_timeout,
            Duration::from_millis(2500)
        );
        for (k, v) in [
            ("HTTP_HEADER_READ_TIMEOUT_S", "soon"),
            ("HTTP_BODY_READ_TIMEOUT_S", "0"),
            ("HTTP_MAX_CONNECTIONS", "0"),
        ] {
            let get = |name: &str| (name == k).then(|| v.to_string());
            let e = ServerSettings::from_lookup(&get).unwrap_err().to_string();
            assert!(e.contains(k), "{k}={v}: {e}");
        }
    }
}
