//! The state database's settings: `DATABASE_URL` or the earlier implementation's
//! `POSTGIS_HOST/PORT/USER/PASSWORD/DATABASE`, TLS (`sslmode`, `sslrootcert`, or
//! `DATABASE_SSLMODE`, `DATABASE_SSL_ROOT_CERT`) and the Entra ID login
//! (`USE_MANAGED_IDENTITY`, `MANAGED_IDENTITY_CLIENT_ID`). [`DatabaseSettings::from_lookup`]
//! refuses missing and contradictory combinations, and no error message contains a password.
//! `store::connect` builds the pool from them.
//!
//! - `sslmode`: `disable`, `prefer` (the libpq default: TLS when the server offers it, no
//!   certificate check), `require` (TLS, no certificate check, as libpq does without a root
//!   certificate), `verify-full` (certificate chain and host name).
//! - `sslrootcert` for `verify-full`: a PEM file, `system` (the OS store, the default) or
//!   `builtin` (Mozilla's roots compiled into the binary, for images without `ca-certificates`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::SslMode as PgSslMode;

use super::ConfigError;
use super::parse::flag;

/// TLS mode of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, certificate not checked.
    Prefer,
    /// TLS required, certificate not checked.
    Require,
    /// TLS required, certificate chain and host name verified.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(Self::Disable),
            "allow" | "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-full" => Ok(Self::VerifyFull),
            "verify-ca" => Err("sslmode=verify-ca is not supported; use verify-full (checks the chain and the host name) or require".into()),
            other => Err(format!("unknown sslmode {other:?}; use disable, prefer, require or verify-full")),
        }
    }
}

/// Where `verify-full` finds its trusted roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// The operating system's store.
    System,
    /// Mozilla's roots compiled into the binary.
    Builtin,
    /// A PEM file with one or more certificates.
    File(PathBuf),
}

/// TLS settings of the database connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Mode.
    pub mode: SslMode,
    /// Roots for `verify-full`.
    pub roots: RootCerts,
}

/// Entra ID (managed identity) password settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraAuth {
    /// User-assigned identity client id (`MANAGED_IDENTITY_CLIENT_ID`); system-assigned when absent.
    pub client_id: Option<String>,
}

/// Database connection settings beyond the URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DatabaseSettings {
    /// libpq URL (sslmode/sslrootcert included when set).
    pub url: String,
    /// Entra ID token as password.
    pub entra: Option<EntraAuth>,
    /// Pooled connections older than this are closed instead of reused (`DB_POOL_MAX_LIFETIME_S`).
    pub max_lifetime: Duration,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("entra", &self.entra)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

/// The URL with any password replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable URL>".to_string(),
    }
}

impl DatabaseSettings {
    /// Pooled connections are retired after 30 minutes, below the lifetime of an Entra token.
    pub(crate) const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(1800);

    /// Reads the settings through `get`.
    pub(crate) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let nonempty = |k: &str| super::parse::nonempty(get, k);
        let use_mi = flag(get, "USE_MANAGED_IDENTITY")?;
        let client_id = nonempty("MANAGED_IDENTITY_CLIENT_ID");
        if client_id.is_some() && !use_mi {
            return Err(ConfigError::Invalid {
                name: "MANAGED_IDENTITY_CLIENT_ID",
                reason: "is set but USE_MANAGED_IDENTITY is not true; set USE_MANAGED_IDENTITY=true to log in to PostgreSQL with that identity, or remove it".into(),
            });
        }
        let postgis: Vec<&str> = [
            "POSTGIS_HOST",
            "POSTGIS_PORT",
            "POSTGIS_USER",
            "POSTGIS_PASSWORD",
            "POSTGIS_DATABASE",
        ]
        .into_iter()
        .filter(|k| nonempty(k).is_some())
        .collect();
        let mut url = match (nonempty("DATABASE_URL"), postgis.is_empty()) {
            (Some(_), false) => {
                return Err(ConfigError::Invalid {
                    name: "DATABASE_URL",
                    reason: format!(
                        "is set together with {}; use either DATABASE_URL or the POSTGIS_* settings",
                        postgis.join(", ")
                    ),
                });
            }
            (None, true) => {
                return Err(ConfigError::Missing {
                    name: "DATABASE_URL",
                    hint: "a libpq URL such as postgres://user:password@localhost:5432/coremachine, or POSTGIS_HOST, POSTGIS_USER and POSTGIS_DATABASE",
                });
            }
            (Some(u), true) => u,
            (None, false) => {
                let host = nonempty("POSTGIS_HOST").ok_or(ConfigError::Missing {
                    name: "POSTGIS_HOST",
                    hint: "the server host, e.g. myserver.postgres.database.azure.com",
                })?;
                let port: u16 = match nonempty("POSTGIS_PORT") {
                    None => 5432,
                    Some(p) => p.parse().map_err(|_| ConfigError::Invalid {
                        name: "POSTGIS_PORT",
                        reason: format!("expected a port number, got {p:?}"),
                    })?,
                };
                let user = nonempty("POSTGIS_USER")
                    .or_else(|| use_mi.then(|| nonempty("MANAGED_IDENTITY_NAME")).flatten())
                    .ok_or(ConfigError::Missing {
                        name: "POSTGIS_USER",
                        hint: "the database user (with USE_MANAGED_IDENTITY: the identity's name, also accepted as MANAGED_IDENTITY_NAME)",
                    })?;
                let db = nonempty("POSTGIS_DATABASE").ok_or(ConfigError::Missing {
                    name: "POSTGIS_DATABASE",
                    hint: "the database name",
                })?;
                let mut u = url::Url::parse("postgres://localhost/").expect("static URL");
                let invalid = |name: &'static str| ConfigError::Invalid {
                    name,
                    reason: "cannot be used in a connection URL".into(),
                };
                u.set_host(Some(&host))
                    .map_err(|_| invalid("POSTGIS_HOST"))?;
                u.set_port(Some(port))
                    .map_err(|_| invalid("POSTGIS_PORT"))?;
                u.set_username(&user).map_err(|_| invalid("POSTGIS_USER"))?;
                if let Some(p) = nonempty("POSTGIS_PASSWORD") {
                    u.set_password(Some(&p))
                        .map_err(|_| invalid("POSTGIS_PASSWORD"))?;
                }
                u.set_path(&format!("/{db}"));
                u.to_string()
            }
        };
        let (pg, tls) = parse_url(&url).map_err(|reason| ConfigError::Invalid {
            name: "DATABASE_URL",
            reason,
        })?;
        let mut tls = tls;
        for (name, url_key) in [
            ("DATABASE_SSLMODE", "sslmode"),
            ("DATABASE_SSL_ROOT_CERT", "sslrootcert"),
        ] {
            if let Some(v) = nonempty(name) {
                if url_param(&url, url_key).is_some_and(|u| u != v) {
                    return Err(ConfigError::Invalid {
                        name,
                        reason: format!("{v:?} contradicts {url_key} in the database URL"),
                    });
                }
                if url_param(&url, url_key).is_none() {
                    url = with_param(&url, url_key, &v);
                }
            }
        }
        if let Some(v) = nonempty("DATABASE_SSLMODE") {
            tls.mode = v.parse().map_err(|reason| ConfigError::Invalid {
                name: "DATABASE_SSLMODE",
                reason,
            })?;
        }
        if use_mi {
            if pg.get_password().is_some() {
                return Err(ConfigError::Invalid {
                    name: "USE_MANAGED_IDENTITY",
                    reason: "is true but the database settings also carry a password; with a managed identity the Entra ID token is the password, so remove it".into(),
                });
            }
            if url_param(&url, "sslmode").is_none() {
                // Azure enforces TLS; a token must never travel in clear.
                url = with_param(&url, "sslmode", "require");
            } else if tls.mode == SslMode::Disable || tls.mode == SslMode::Prefer {
                return Err(ConfigError::Invalid {
                    name: "DATABASE_SSLMODE",
                    reason: "sslmode must be require or verify-full with USE_MANAGED_IDENTITY (the token is the password)".into(),
                });
            }
        }
        let max_lifetime = match nonempty("DB_POOL_MAX_LIFETIME_S") {
            None => Self::DEFAULT_MAX_LIFETIME,
            Some(v) => match v.parse::<u64>() {
                Ok(s) if (10..=86_400).contains(&s) => Duration::from_secs(s),
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "DB_POOL_MAX_LIFETIME_S",
                        reason: format!("expected seconds in 10..=86400, got {v:?}"),
                    });
                }
            },
        };
        // Validate the final form once more (roots file exists, etc.).
        let (_, tls) = parse_url(&url).map_err(|reason| ConfigError::Invalid {
            name: "DATABASE_URL",
            reason,
        })?;
        if let RootCerts::File(p) = &tls.roots
            && !p.is_file()
        {
            return Err(ConfigError::Invalid {
                name: "DATABASE_SSL_ROOT_CERT",
                reason: format!("root certificate file {} does not exist", p.display()),
            });
        }
        Ok(Self {
            url,
            entra: use_mi.then_some(EntraAuth { client_id }),
            max_lifetime,
        })
    }
}

fn url_param(url: &str, key: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    u.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn with_param(url: &str, key: &str, value: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair(key, value);
            u.to_string()
        }
        Err(_) => format!("{url} {key}={value}"),
    }
}

/// Splits a libpq URL into the driver's config and the TLS settings (`sslmode`, `sslrootcert`
/// are handled here; the driver knows neither `verify-full` nor root files). The error never
/// contains the URL (it may hold a password).
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, TlsSettings), String> {
    let mut mode = SslMode::Prefer;
    let mut roots = RootCerts::System;
    let mut apply = |k: &str, v: &str| -> Result<bool, String> {
        match k {
            "sslmode" => {
                mode = v.parse()?;
                Ok(true)
            }
            "sslrootcert" => {
                roots = match v {
                    "system" | "" => RootCerts::System,
                    "builtin" => RootCerts::Builtin,
                    path => RootCerts::File(PathBuf::from(path)),
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut u = url::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
        let mut kept: Vec<(String, String)> = Vec::new();
        for (k, v) in u.query_pairs() {
            if !apply(&k, &v)? {
                kept.push((k.into_owned(), v.into_owned()));
            }
        }
        if kept.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(kept);
        }
        u.to_string()
    } else {
        // key=value form
        let mut kept = Vec::new();
        for part in url.split_whitespace() {
            match part.split_once('=') {
                Some((k, v)) if apply(k, v)? => {}
                _ => kept.push(part),
            }
        }
        kept.join(" ")
    };
    let mut pg = tokio_postgres::Config::from_str(&rest).map_err(|e| {
        format!(
            "cannot be parsed: {}",
            e.to_string().chars().take(200).collect::<String>()
        )
    })?;
    pg.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyFull => PgSslMode::Require,
    });
    Ok((pg, TlsSettings { mode, roots }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::lookup;

    #[test]
    fn sslmode_and_root_are_taken_out_of_the_url() {
        let (pg, tls) = parse_url("postgres://u:p@db.example.com:5432/app?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x").unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.roots, RootCerts::File("/etc/ca.pem".into()));
        assert_eq!(pg.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(pg.get_application_name(), Some("x"));
        let (_, tls) = parse_url("postgres://u@h/app").unwrap();
        assert_eq!(
            tls,
            TlsSettings {
                mode: SslMode::Prefer,
                roots: RootCerts::System
            }
        );
        let (_, tls) = parse_url("host=h user=u sslmode=require").unwrap();
        assert_eq!(tls.mode, SslMode::Require);
        let e = parse_url("postgres://u:hunter2@h/app?sslmode=verify-ca").unwrap_err();
        assert!(e.contains("verify-full") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn postgis_settings_build_the_url() {
        let s = DatabaseSettings::from_lookup(&lookup(&[
            ("POSTGIS_HOST", "srv.postgres.database.azure.com"),
            ("POSTGIS_USER", "app"),
            ("POSTGIS_PASSWORD", "p@ss/word"),
            ("POSTGIS_DATABASE", "geo"),
            ("DATABASE_SSLMODE", "require"),
        ]))
        .unwrap();
        let (pg, tls) = parse_url(&s.url).unwrap();
        assert_eq!(pg.get_password(), Some(b"p@ss/word".as_slice()));
        assert_eq!(pg.get_dbname(), Some("geo"));
        assert_eq!(pg.get_ports(), &[5432]);
        assert_eq!(tls.mode, SslMode::Require);
        assert!(!format!("{s:?}").contains("p@ss"), "{s:?}");
        assert_eq!(s.entra, None);
    }

    #[test]
    fn managed_identity_settings_default_to_tls_and_refuse_passwords() {
        let s = DatabaseSettings::from_lookup(&lookup(&[
            ("POSTGIS_HOST", "srv.postgres.database.azure.com"),
            ("MANAGED_IDENTITY_NAME", "my-function-app"),
            ("POSTGIS_DATABASE", "geo"),
            ("USE_MANAGED_IDENTITY", "true"),
            ("MANAGED_IDENTITY_CLIENT_ID", "abc"),
        ]))
        .unwrap();
        assert_eq!(
            s.entra,
            Some(EntraAuth {
                client_id: Some("abc".into())
            })
        );
        let (pg, tls) = parse_url(&s.url).unwrap();
        assert_eq!(pg.get_user(), Some("my-function-app"));
        assert_eq!(tls.mode, SslMode::Require);

        let e = DatabaseSettings::from_lookup(&lookup(&[
            ("DATABASE_URL", "postgres://app:SECRETPW@h/geo"),
            ("USE_MANAGED_IDENTITY", "true"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("USE_MANAGED_IDENTITY") && !e.contains("SECRETPW"),
            "{e}"
        );

        let e = DatabaseSettings::from_lookup(&lookup(&[
            ("DATABASE_URL", "postgres://app@h/geo?sslmode=disable"),
            ("USE_MANAGED_IDENTITY", "yes"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("require or verify-full"), "{e}");
    }

    #[test]
    fn missing_and_contradictory_settings_fail_with_the_variable_name() {
        let e = DatabaseSettings::from_lookup(&lookup(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("DATABASE_URL") && e.contains("POSTGIS_HOST"),
            "{e}"
        );
        let e = DatabaseSettings::from_lookup(&lookup(&[
            ("DATABASE_URL", "postgres://a:SECRETPW@h/db"),
            ("POSTGIS_HOST", "h"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("POSTGIS_HOST") && !e.contains("SECRETPW"), "{e}");
        let e = DatabaseSettings::from_lookup(&lookup(&[
            ("DATABASE_URL", "postgres://a@h/db?sslmode=require"),
            ("DATABASE_SSLMODE", "disable"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("contradicts"), "{e}");
        let e = DatabaseSettings::from_lookup(&lookup(&[
            ("DATABASE_URL", "postgres://a@h/db"),
            ("MANAGED_IDENTITY_CLIENT_ID", "x"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("USE_MANAGED_IDENTITY"), "{e}");
        let e = DatabaseSettings::from_lookup(&lookup(&[(
            "DATABASE_URL",
            "postgres://a@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let e = DatabaseSettings::from_lookup(&lookup(&[
            ("DATABASE_URL", "postgres://a@h/db"),
            ("USE_MANAGED_IDENTITY", "maybe"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("USE_MANAGED_IDENTITY"), "{e}");
    }
}
