//! How the pool reaches PostgreSQL: TLS with rustls and, in Azure, an Entra ID token as the
//! password of every new connection (functions-protocol.md §6). The settings (URL, TLS, Entra
//! ID) are read and checked with the rest of the settings ([`crate::config::DatabaseSettings`]);
//! this module only connects.
//!
//! - TLS per the URL's `sslmode` / `sslrootcert` ([`TlsSettings`]): no certificate check for
//!   `prefer` and `require`, chain and host name for `verify-full`.
//! - Entra ID (`USE_MANAGED_IDENTITY=true`): the managed identity's token for
//!   `https://ossrdbms-aad.database.windows.net/.default` is fetched (cached, refreshed 5 minutes
//!   before expiry) for each new connection, and pooled connections are retired after
//!   `DB_POOL_MAX_LIFETIME_S` (default 30 min), below the token lifetime.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::future::BoxFuture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
// PEM parsing is rustls-pki-types' own (rustls-pemfile is unmaintained: RUSTSEC-2025-0134).
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::error::{StoreError, describe};
// Named here by the job types (jobs/ingest_vector/handlers.rs).
pub(crate) use super::error::describe_pool_error;
use crate::azure::credential::{ManagedIdentity, SharedTokenSource, scopes};
use crate::config::{RootCerts, Settings, SslMode, TlsSettings, parse_url};
use crate::telemetry::checkpoints as cp;

/// The rustls connector for these settings (`None` for `disable`).
pub fn tls_connector(
    tls: &TlsSettings,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS set-up: {e}")))?;
    let config = match tls.mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull => builder
            .with_root_certificates(root_store(&tls.roots)?)
            .with_no_client_auth(),
    };
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

fn root_store(roots: &RootCerts) -> Result<rustls::RootCertStore, StoreError> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        RootCerts::Builtin => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(StoreError::Config(format!(
                    "sslmode=verify-full: no root certificates found in the system store ({} errors); install ca-certificates, or set sslrootcert to a PEM file or to builtin",
                    found.errors.len()
                )));
            }
        }
        RootCerts::File(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::Config(format!(
                    "cannot read root certificate file {}: {e}",
                    path.display()
                ))
            })?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    StoreError::Config(format!(
                        "root certificate file {} is not PEM: {e}",
                        path.display()
                    ))
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StoreError::Config(format!(
                    "root certificate file {} holds no usable certificate",
                    path.display()
                )));
            }
        }
    }
    Ok(store)
}

/// `require`/`prefer`: encryption without authentication of the server (libpq's behaviour
/// without a root certificate). Handshake signatures are still checked.
#[derive(Debug)]
struct NoCertificateCheck(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens connections: TLS per the settings, and the Entra token as password when configured.
struct Connector {
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    tokens: Option<SharedTokenSource>,
}

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let cfg = pg_config.clone();
        Box::pin(async move {
            let Some(tokens) = &self.tokens else {
                return self.open(cfg).await;
            };
            let first = self
                .open(with_token(cfg.clone(), tokens, false).await)
                .await;
            match first {
                // Refused login (28P01 invalid password, 28000 invalid authorization): the cached
                // token may be stale or revoked, so fetch a new one and try once more, as a 401
                // does for the HTTP clients.
                Err(e) if e.code().is_some_and(|c| c.code().starts_with("28")) => {
                    cp::emit_warn(
                        cp::DB_TOKEN_REFRESHED,
                        &cp::Fields::default()
                            .extra("credential", tokens.describe())
                            .extra("reason", describe(&e)),
                    );
                    self.open(with_token(cfg, tokens, true).await).await
                }
                other => other,
            }
        })
    }
}

/// `cfg` with the Entra token as password (`refresh`: a newly acquired one).
async fn with_token(
    mut cfg: tokio_postgres::Config,
    tokens: &SharedTokenSource,
    refresh: bool,
) -> tokio_postgres::Config {
    let token = if refresh {
        tokens.refresh(scopes::POSTGRESQL).await
    } else {
        tokens.token(scopes::POSTGRESQL).await
    };
    match token {
        Ok(t) => {
            cfg.password(t.secret());
        }
        // The driver's error type cannot carry this; the connection attempt then fails on
        // authentication, and this checkpoint says why.
        Err(e) => cp::emit_error(
            cp::DB_TOKEN_FAILED,
            &cp::Fields::default().extra("credential", tokens.describe()),
            "CredentialError",
            &e,
        ),
    }
    cfg
}

impl Connector {
    async fn open(
        &self,
        cfg: tokio_postgres::Config,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        let spawn = |fut: BoxFuture<'static, Result<(), tokio_postgres::Error>>| {
            tokio::spawn(async move {
                if let Err(e) = fut.await {
                    tracing::warn!(target: "coremachine::store", "database connection closed with an error: {e}");
                }
            })
        };
        match &self.tls {
            Some(tls) => {
                let (client, conn) = cfg.connect(tls.clone()).await?;
                Ok((client, spawn(Box::pin(conn))))
            }
            None => {
                let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                Ok((client, spawn(Box::pin(conn))))
            }
        }
    }
}

/// Run once on every new pooled connection. The hot-path statements take arrays (grouped
/// completions, settles); for them PostgreSQL's plan cache estimates a custom plan cheaper every
/// time and re-plans on each execution: 0.65 ms of planning for a 0.4 ms statement, measured in
/// docs/performance.md. Every statement of the engine is written for the index it uses, so each is
/// planned once per connection instead. (A `SET`, not a startup option: PgBouncer refuses those.)
pub(crate) const SESSION_SETUP: &str = "SET plan_cache_mode = force_generic_plan";

/// Builds the pool for `url` with TLS per its `sslmode`/`sslrootcert`, the Entra token source
/// when given, and connections retired after `max_lifetime`. Connects lazily.
pub(crate) fn build_pool(
    url: &str,
    max_size: usize,
    tokens: Option<SharedTokenSource>,
    max_lifetime: Option<Duration>,
) -> Result<Pool, StoreError> {
    let (mut pg, tls) =
        parse_url(url).map_err(|e| StoreError::Config(format!("DATABASE_URL {e}")))?;
    if pg.get_application_name().is_none() {
        pg.application_name("coremachine");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(10));
    }
    crate::telemetry::dependency::set_database(&pg);
    let connector = Connector {
        tls: tls_connector(&tls)?,
        tokens,
    };
    let mgr = Manager::from_connect(
        pg,
        connector,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(mgr)
        .max_size(max_size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(15)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .post_create(deadpool_postgres::Hook::async_fn(|client, _| {
            Box::pin(async move {
                client.batch_execute(SESSION_SETUP).await.map_err(|e| {
                    deadpool_postgres::HookError::message(format!(
                        "{SESSION_SETUP}: {}",
                        describe(&e)
                    ))
                })
            })
        }));
    if let Some(max) = max_lifetime {
        builder = builder.pre_recycle(deadpool_postgres::Hook::sync_fn(move |_, metrics| {
            if metrics.age() > max {
                Err(deadpool_postgres::HookError::message(
                    "connection reached DB_POOL_MAX_LIFETIME_S",
                ))
            } else {
                Ok(())
            }
        }));
    }
    builder
        .build()
        .map_err(|e| StoreError::Config(e.to_string()))
}

/// The pool of a process: `DATABASE_URL` (TLS per its sslmode), managed-identity tokens when
/// `USE_MANAGED_IDENTITY` is set, `DB_POOL_MAX_SIZE` connections retired after
/// `DB_POOL_MAX_LIFETIME_S`.
pub fn pool_for_settings(s: &Settings) -> Result<Pool, StoreError> {
    let tokens: Option<SharedTokenSource> = match &s.db_identity {
        None => None,
        Some(e) => Some(Arc::new(
            ManagedIdentity::new(e.client_id.clone())
                .map_err(|err| StoreError::Config(err.to_string()))?,
        )),
    };
    build_pool(
        &s.database_url,
        s.db_pool_size,
        tokens,
        Some(s.db_pool_max_lifetime),
    )
}
