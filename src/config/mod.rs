//! Settings, read once from environment variables and validated at start-up.
//!
//! This module turns the environment into typed settings and imports nothing from the rest of
//! the crate but the Blob Storage connection-string parser (`storage::ConnectionString`, which
//! validates `AZURE_STORAGE_CONNECTION_STRING`): the pool (`store::connect`), the Service Bus sender, retention and the Azure
//! clients take the types defined here. Every variable is listed with an example in
//! `local.settings.json.example`. Parsing errors name the variable and the value that was wrong;
//! secrets are never echoed. Each default is written once, in the `Default` (or
//! [`Settings::local`]) of its type; reading a variable falls back to it.
//!
//! - [`Settings`]: everything one process needs, with [`TransportSettings`] saying where
//!   messages go (the local queue or Service Bus, never both, never neither).
//! - `database`: the state database's URL, TLS and Entra ID login ([`DatabaseSettings`]).
//! - `service_bus`: the Service Bus namespace, authentication and limits
//!   ([`ServiceBusSettings`]).
//! - `azure`: what every Azure client shares ([`RetryPolicy`], [`BreakerSettings`]).
//! - `retention`, `storage`, `http`: [`RetentionSettings`], [`StorageSettings`],
//!   [`HttpSettings`] and [`ServerSettings`].
//! - `parse`: reading one variable (numbers in a range, the one boolean parser).

mod azure;
mod database;
pub(crate) mod http;
mod parse;
mod retention;
mod service_bus;
mod storage;

use std::time::Duration;

pub use azure::{BreakerSettings, RetryPolicy};
pub(crate) use database::{DatabaseSettings, redact_url};
pub use database::{EntraAuth, RootCerts, SslMode, TlsSettings, parse_url};
pub use http::{HttpSettings, Secret, ServerSettings};
pub use retention::RetentionSettings;
pub use service_bus::{
    ServiceBusAuth, ServiceBusConnectionString, ServiceBusLimits, ServiceBusSettings,
};
pub use storage::StorageSettings;

use parse::{MS, flag, num, secs, whole};

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

/// Which transport a command asks for: `local` and `migrate` use the local queue, `serve` Service
/// Bus, `janitor` and `purge` whichever is configured ([`TransportMode::for_janitor`]). The
/// settings of the chosen one are then read into [`TransportSettings`].
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

/// Where messages go, with the settings of that transport only: a process either has local
/// queues (and no Service Bus settings) or Service Bus (and no local queue).
// One value per process, read once: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum TransportSettings {
    /// Queues are tables in PostgreSQL (`LOCAL_QUEUE_*`), delivered by the host emulator.
    Local(LocalQueueSettings),
    /// Azure: the Service Bus REST API (`ServiceBusConnection`, `SERVICE_BUS_*`).
    ServiceBus(ServiceBusSettings),
}

impl TransportSettings {
    /// Reads the settings of the transport `mode` asks for through `get`; the other
    /// transport's variables are not read.
    pub fn from_lookup(
        mode: TransportMode,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Ok(match mode {
            TransportMode::LocalQueue => Self::Local(LocalQueueSettings::from_lookup(get)?),
            TransportMode::ServiceBus => Self::ServiceBus(ServiceBusSettings::from_lookup(get)?),
        })
    }

    /// The local queue's settings, when messages are PostgreSQL rows.
    pub fn local_queue(&self) -> Option<&LocalQueueSettings> {
        match self {
            Self::Local(q) => Some(q),
            Self::ServiceBus(_) => None,
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

impl LocalQueueSettings {
    /// Reads `LOCAL_QUEUE_*` through `get`; an absent variable keeps its [`Default`].
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            lock_duration: secs(
                get,
                "LOCAL_QUEUE_LOCK_DURATION_S",
                d.lock_duration,
                0.1,
                86400.0,
            )?,
            max_delivery_count: num(
                get,
                "LOCAL_QUEUE_MAX_DELIVERY_COUNT",
                d.max_delivery_count.into(),
                1,
                2000,
            )? as i32,
            poll_interval: whole(get, "LOCAL_QUEUE_POLL_MS", MS, d.poll_interval, 1, 60_000)?,
        })
    }
}

/// All settings of one process. `Debug` shows the database URL without its password.
#[derive(Clone)]
pub struct Settings {
    /// libpq-style URL of the state database (`DATABASE_URL`, or built from `POSTGIS_*`).
    pub database_url: String,
    /// Maximum pooled connections (`DB_POOL_MAX_SIZE`, default 16).
    pub db_pool_size: usize,
    /// Queue names.
    pub queues: QueueNames,
    /// Where messages go, and that transport's settings.
    pub transport: TransportSettings,
    /// Task retries.
    pub retry: RetrySettings,
    /// How long a claimed task is leased before the janitor may re-queue it (`TASK_LEASE_S`, default 600).
    pub task_lease: Duration,
    /// Age after which an unpublished outbox row is republished by the janitor (`OUTBOX_REPUBLISH_AFTER_S`, default 60).
    pub outbox_republish_after: Duration,
    /// How long a queued job may sit untouched before the janitor re-drives its stage message
    /// (`JANITOR_STUCK_AFTER_S`, default 900 s: longer than the longest retry backoff).
    pub janitor_stuck_after: Duration,
    /// Entra ID (managed identity) login to PostgreSQL (`USE_MANAGED_IDENTITY`, `MANAGED_IDENTITY_CLIENT_ID`).
    pub db_identity: Option<EntraAuth>,
    /// Pooled connections are retired after this (`DB_POOL_MAX_LIFETIME_S`, default 1800 s).
    pub db_pool_max_lifetime: Duration,
    /// HTTP API keys and the admin switch.
    pub http: HttpSettings,
    /// The HTTP server's timeouts and connection limit (`src/startup/server.rs`).
    pub server: ServerSettings,
    /// `serve` applies pending migrations before listening (`MIGRATE_ON_START`, default false);
    /// the Function App's identity then owns the schema it creates.
    pub migrate_on_start: bool,
    /// Largest invocation a queue-trigger route reads (`TRIGGER_MAX_BODY_BYTES`, default
    /// [`TRIGGER_MAX_BODY_BYTES`]); a larger one is recorded in `message_failures` and
    /// acknowledged.
    pub trigger_max_body_bytes: usize,
    /// How many messages of one batched invocation (`"cardinality": "many"`) are handled at
    /// once (`TRIGGER_BATCH_CONCURRENCY`, default 32; heavy task types are bounded further by
    /// `heavy_task_concurrency`).
    pub trigger_batch_concurrency: usize,
    /// How many of those may be heavy handlers (GDAL/OGR task types, `Registry::mark_heavy`) at
    /// once (`HEAVY_TASK_CONCURRENCY`, default 4).
    pub heavy_task_concurrency: usize,
    /// How long a batched invocation goes on claiming tasks (`TRIGGER_BATCH_BUDGET_S`, default
    /// 600 s): what is still unclaimed then is handed back to the queue as new messages, so an
    /// invocation ends within this plus one task (functionTimeout must cover both).
    pub trigger_batch_budget: Duration,
    /// How long finished jobs and events are kept (`RETENTION_*`, src/retention.rs).
    pub retention: RetentionSettings,
}

/// What a 100 MB Premium Service Bus message becomes in the host's invocation: base64 (4/3) plus
/// the Metadata (application properties and the broker's fields), rounded up: 150 MiB.
pub const TRIGGER_MAX_BODY_BYTES: usize = 150 * 1024 * 1024;

impl Settings {
    /// Settings for tests and local mode with the given database: every default of every
    /// setting (the one place they are written; [`Settings::from_lookup`] falls back to these).
    pub fn local(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            db_pool_size: 16,
            queues: QueueNames::default(),
            transport: TransportSettings::Local(LocalQueueSettings::default()),
            retry: RetrySettings::default(),
            task_lease: Duration::from_secs(600),
            outbox_republish_after: Duration::from_secs(60),
            janitor_stuck_after: Duration::from_secs(900),
            db_identity: None,
            db_pool_max_lifetime: DatabaseSettings::DEFAULT_MAX_LIFETIME,
            http: HttpSettings::default(),
            server: ServerSettings::default(),
            migrate_on_start: false,
            trigger_max_body_bytes: TRIGGER_MAX_BODY_BYTES,
            trigger_batch_concurrency: 32,
            heavy_task_concurrency: 4,
            trigger_batch_budget: Duration::from_secs(600),
            retention: RetentionSettings::default(),
        }
    }

    /// Reads the settings from the process environment.
    pub fn from_env(transport: TransportMode) -> Result<Self, ConfigError> {
        Self::from_lookup(transport, |k| std::env::var(k).ok())
    }

    /// Reads the settings through `get` (testable without touching the environment). A variable
    /// that is absent keeps the default of [`Settings::local`].
    pub fn from_lookup(
        transport: TransportMode,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // DATABASE_URL or POSTGIS_*, TLS, managed identity (database.rs).
        let db = DatabaseSettings::from_lookup(&get)?;
        let mut s = Self::local(db.url);
        s.db_identity = db.entra;
        s.db_pool_max_lifetime = db.max_lifetime;
        s.migrate_on_start = flag(&get, "MIGRATE_ON_START")?;
        s.transport = TransportSettings::from_lookup(transport, &get)?;
        s.db_pool_size = num(&get, "DB_POOL_MAX_SIZE", s.db_pool_size as i64, 1, 1000)? as usize;
        s.trigger_max_body_bytes = num(
            &get,
            "TRIGGER_MAX_BODY_BYTES",
            s.trigger_max_body_bytes as i64,
            64 * 1024,
            1 << 30,
        )? as usize;
        s.trigger_batch_concurrency = num(
            &get,
            "TRIGGER_BATCH_CONCURRENCY",
            s.trigger_batch_concurrency as i64,
            1,
            1000,
        )? as usize;
        s.heavy_task_concurrency = num(
            &get,
            "HEAVY_TASK_CONCURRENCY",
            s.heavy_task_concurrency as i64,
            1,
            1000,
        )? as usize;
        s.trigger_batch_budget = secs(
            &get,
            "TRIGGER_BATCH_BUDGET_S",
            s.trigger_batch_budget,
            1.0,
            86400.0,
        )?;
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
        s.retry = RetrySettings::from_lookup(&get)?;
        s.task_lease = secs(&get, "TASK_LEASE_S", s.task_lease, 1.0, 86400.0)?;
        s.outbox_republish_after = secs(
            &get,
            "OUTBOX_REPUBLISH_AFTER_S",
            s.outbox_republish_after,
            0.0,
            86400.0,
        )?;
        s.janitor_stuck_after = secs(
            &get,
            "JANITOR_STUCK_AFTER_S",
            s.janitor_stuck_after,
            0.0,
            7.0 * 86400.0,
        )?;
        s.http = HttpSettings::from_lookup(&get)?;
        s.server = ServerSettings::from_lookup(&get)?;
        // Checked here so that a wrong value stops the process at start-up; the job types that
        // read blobs read it again when they first need a client (jobs/list_container_contents).
        StorageSettings::from_lookup(&get)?;
        s.retention = RetentionSettings::from_lookup(&get)?;
        Ok(s)
    }
}

impl RetrySettings {
    /// Reads `TASK_MAX_RETRIES` and `TASK_RETRY_*_DELAY_S` through `get`; an absent variable
    /// keeps its [`Default`].
    fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let r = Self {
            max_retries: num(get, "TASK_MAX_RETRIES", d.max_retries.into(), 0, 10)? as u32,
            base_delay: secs(get, "TASK_RETRY_BASE_DELAY_S", d.base_delay, 0.0, 3600.0)?,
            max_delay: secs(get, "TASK_RETRY_MAX_DELAY_S", d.max_delay, 0.0, 86400.0)?,
        };
        if r.max_delay < r.base_delay {
            return Err(ConfigError::Invalid {
                name: "TASK_RETRY_MAX_DELAY_S",
                reason: "must not be smaller than TASK_RETRY_BASE_DELAY_S".into(),
            });
        }
        Ok(r)
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url))
            .field("db_pool_size", &self.db_pool_size)
            .field("queues", &self.queues)
            .field("transport", &self.transport)
            .field("retry", &self.retry)
            .field("task_lease", &self.task_lease)
            .field("outbox_republish_after", &self.outbox_republish_after)
            .field("janitor_stuck_after", &self.janitor_stuck_after)
            .field("db_identity", &self.db_identity)
            .field("db_pool_max_lifetime", &self.db_pool_max_lifetime)
            .field("http", &self.http)
            .field("server", &self.server)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::lookup;

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
    fn with_nothing_set_every_setting_is_the_default_of_settings_local() {
        let url = "postgres://app@db.example.com/geo";
        let read =
            Settings::from_lookup(TransportMode::LocalQueue, lookup(&[("DATABASE_URL", url)]))
                .unwrap();
        // Debug lists every field but the retention and trigger ones, compared below.
        assert_eq!(format!("{read:?}"), format!("{:?}", Settings::local(url)));
        let local = Settings::local(url);
        assert_eq!(read.retention, local.retention);
        assert_eq!(read.trigger_max_body_bytes, local.trigger_max_body_bytes);
        assert_eq!(
            read.trigger_batch_concurrency,
            local.trigger_batch_concurrency
        );
        assert_eq!(read.heavy_task_concurrency, local.heavy_task_concurrency);
        assert_eq!(read.trigger_batch_budget, local.trigger_batch_budget);
    }

    #[test]
    fn service_bus_settings_without_a_namespace_or_connection_are_an_error_naming_the_variable() {
        let e = TransportSettings::from_lookup(TransportMode::ServiceBus, &lookup(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ServiceBusConnection__fullyQualifiedNamespace")
                && e.contains("ServiceBusConnection"),
            "{e}"
        );
        let e = Settings::from_lookup(
            TransportMode::ServiceBus,
            lookup(&[("DATABASE_URL", "postgres://app@h/geo")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ServiceBusConnection__fullyQualifiedNamespace"),
            "{e}"
        );
    }

    #[test]
    fn each_mode_reads_its_own_transport_and_not_the_other() {
        let sb = lookup(&[
            (
                "ServiceBusConnection__fullyQualifiedNamespace",
                "ns1.servicebus.windows.net",
            ),
            ("LOCAL_QUEUE_MAX_DELIVERY_COUNT", "3"),
        ]);
        match TransportSettings::from_lookup(TransportMode::ServiceBus, &sb).unwrap() {
            TransportSettings::ServiceBus(s) => {
                assert_eq!(s.namespace, "ns1.servicebus.windows.net")
            }
            other => panic!("Service Bus expected: {other:?}"),
        }
        let local = TransportSettings::from_lookup(TransportMode::LocalQueue, &sb).unwrap();
        let q = local.local_queue().expect("the local queue");
        assert_eq!(q.max_delivery_count, 3);
        assert_eq!(q.lock_duration, LocalQueueSettings::default().lock_duration);
        let e = TransportSettings::from_lookup(
            TransportMode::LocalQueue,
            &lookup(&[("LOCAL_QUEUE_POLL_MS", "0")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("LOCAL_QUEUE_POLL_MS"), "{e}");
    }
}
