//! PostgreSQL over TLS against the second, TLS-only test cluster that `scripts/lib/pg_tls.sh`
//! starts (self-signed test CA, server certificate for localhost / 127.0.0.1, plain TCP refused).

use coremachine::store::{self, StoreError};

/// URL of the TLS cluster (exported by scripts/lib/pg_tls.sh).
pub fn tls_url() -> String {
    std::env::var("TEST_PG_TLS_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55433/postgres".to_string())
}

fn cert(var: &str, file: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| format!("{}/.dev/pg_tls-certs/{file}", env!("CARGO_MANIFEST_DIR")))
}

/// The CA that signed the server certificate.
pub fn test_ca() -> String {
    cert("TEST_PG_TLS_CA", "ca.crt")
}

fn wrong_ca() -> String {
    cert("TEST_PG_TLS_WRONG_CA", "wrong-ca.crt")
}

fn with(url: &str, query: &str) -> String {
    format!("{url}?{query}")
}

/// Opens one pooled connection and says whether it is encrypted.
async fn connect(url: &str) -> Result<bool, StoreError> {
    let pool = store::connect_pool(url, 1)?;
    let c = store::client(&pool, "probing the TLS test cluster").await?;
    let row = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|source| StoreError::Query {
            context: "reading pg_stat_ssl".into(),
            source,
        })?;
    Ok(row.get(0))
}

#[tokio::test]
async fn sslmode_require_connects_encrypted() {
    let ssl = connect(&with(&tls_url(), "sslmode=require"))
        .await
        .expect("require connects (start the cluster with scripts/lib/pg_tls.sh)");
    assert!(ssl, "the session is encrypted");
}

#[tokio::test]
async fn sslmode_prefer_uses_tls_when_the_server_offers_it() {
    assert!(connect(&tls_url()).await.expect("prefer connects"));
}

#[tokio::test]
async fn verify_full_with_the_right_root_connects() {
    let ca = test_ca();
    for host_url in [tls_url(), tls_url().replace("127.0.0.1", "localhost")] {
        let url = with(&host_url, &format!("sslmode=verify-full&sslrootcert={ca}"));
        assert!(
            connect(&url)
                .await
                .expect("verify-full with the right root connects")
        );
    }
}

#[tokio::test]
async fn verify_full_with_a_wrong_root_fails_with_a_clear_error() {
    let url = with(
        &tls_url(),
        &format!("sslmode=verify-full&sslrootcert={}", wrong_ca()),
    );
    let e = connect(&url)
        .await
        .expect_err("an unknown issuer is refused");
    let text = e.to_string();
    assert!(
        text.contains("TLS handshake")
            && text.contains("invalid peer certificate")
            && text.contains("UnknownIssuer"),
        "{text}"
    );
}

#[tokio::test]
async fn verify_full_checks_the_host_name() {
    // Same server (hostaddr), but a name the certificate does not carry.
    let url = with(
        &tls_url().replace("127.0.0.1", "db.example.invalid"),
        &format!(
            "hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
            test_ca()
        ),
    );
    let e = connect(&url)
        .await
        .expect_err("a certificate for another name is refused");
    assert!(
        e.to_string()
            .contains("certificate not valid for name \"db.example.invalid\""),
        "{e}"
    );
    // require does not check names (libpq's behaviour without a root certificate).
    let url = with(
        &tls_url().replace("127.0.0.1", "db.example.invalid"),
        "hostaddr=127.0.0.1&sslmode=require",
    );
    assert!(connect(&url).await.expect("require ignores the name"));
}

#[tokio::test]
async fn sslmode_disable_is_refused_by_a_server_that_requires_tls() {
    let e = connect(&with(&tls_url(), "sslmode=disable"))
        .await
        .expect_err("plain TCP is refused");
    assert!(e.to_string().contains("no encryption"), "{e}");
}
