//! Managed identity against the `IDENTITY_ENDPOINT` stand-in (functions-protocol.md §7), through
//! `azure_identity`'s ManagedIdentityCredential: token acquired, cached, refreshed near expiry and
//! after a 401; a user-assigned identity by client id; and the two paths that use it, a Service
//! Bus send and a PostgreSQL login with the token as the password (TLS cluster).
//!
//! `azure_identity` reads `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` from the process environment,
//! which tests running in parallel threads must not change. So each test starts the stand-in,
//! then runs one `child_*` test of this same binary in a child process with those variables set;
//! the child does the token calls and asserts, the parent checks what the endpoint saw. The
//! `child_*` tests are `#[ignore]`d so the normal run does not execute them on their own.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use coremachine::azure::credential::{ManagedIdentity, TokenSource, scopes};
use coremachine::config::ServiceBusSettings;
use coremachine::config::{Settings, TransportMode};
use coremachine::transport::service_bus::ServiceBusSender;
use serde_json::json;

use crate::azure_fakes::{FakeIdentity, FakeServiceBus};

async fn run_child(id: &FakeIdentity, test: &str, env: &[(&str, String)]) {
    let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        &format!("azure_credential::{test}"),
        "--ignored",
        "--test-threads=1",
        "--nocapture",
    ])
    .env("IDENTITY_ENDPOINT", &id.endpoint)
    .env("IDENTITY_HEADER", &id.header)
    .env("COREMACHINE_CHILD_TEST", "1")
    .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("child test finishes")
        .expect("child test runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {test} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = id.violations();
    assert!(v.is_empty(), "identity endpoint protocol violations: {v:?}");
}

fn in_child() {
    assert_eq!(
        std::env::var("COREMACHINE_CHILD_TEST").as_deref(),
        Ok("1"),
        "run by its parent test, which sets IDENTITY_ENDPOINT"
    );
}

#[tokio::test]
async fn system_assigned_tokens_are_acquired_cached_and_refreshed_near_expiry() {
    let id = FakeIdentity::start(Duration::from_secs(3600)).await;
    // service bus, postgresql, service bus (refresh), storage (short-lived), storage again
    id.next_lifetimes(&[3600, 3600, 3600, 120, 3600]);
    run_child(&id, "child_system_assigned", &[]).await;
    let seen: Vec<(String, Option<String>)> = id
        .requests()
        .into_iter()
        .map(|r| (r.resource, r.client_id))
        .collect();
    let r = |s: &str| (s.to_string(), None);
    assert_eq!(
        seen,
        vec![
            r("https://servicebus.azure.net"),
            r("https://ossrdbms-aad.database.windows.net"),
            r("https://servicebus.azure.net"),
            r("https://storage.azure.com"),
            r("https://storage.azure.com"),
        ],
        "one request per scope while cached, one per refresh, one more for a token near expiry"
    );
}

#[tokio::test]
#[ignore = "run in a child process by system_assigned_tokens_are_acquired_cached_and_refreshed_near_expiry"]
async fn child_system_assigned() {
    in_child();
    let mi = ManagedIdentity::new(None).expect("managed identity");
    assert_eq!(mi.describe(), "managed identity (system-assigned)");
    let a = mi.token(scopes::SERVICE_BUS).await.expect("token");
    let b = mi.token(scopes::SERVICE_BUS).await.expect("cached token");
    assert_eq!(a.secret(), "mi-token-servicebus.azure.net-1");
    assert_eq!(a, b, "a token far from expiry is reused");
    let left = (a.expires_on - Utc::now()).num_seconds();
    assert!(
        (3590..=3600).contains(&left),
        "expires_on (a string) was read: {left}s left"
    );
    assert!(
        !format!("{a:?}").contains("mi-token"),
        "Debug hides the token"
    );

    let pg = mi.token(scopes::POSTGRESQL).await.expect("pg token");
    assert_eq!(pg.secret(), "mi-token-ossrdbms-aad.database.windows.net-1");

    let fresh = mi.refresh(scopes::SERVICE_BUS).await.expect("refresh");
    assert_eq!(
        fresh.secret(),
        "mi-token-servicebus.azure.net-2",
        "refresh bypasses every cache"
    );
    assert_eq!(mi.token(scopes::SERVICE_BUS).await.unwrap(), fresh);

    let short = mi.token(scopes::STORAGE).await.expect("storage token");
    assert_eq!(short.secret(), "mi-token-storage.azure.com-1");
    let next = mi
        .token(scopes::STORAGE)
        .await
        .expect("storage token again");
    assert_eq!(
        next.secret(),
        "mi-token-storage.azure.com-2",
        "a token 2 minutes from expiry is replaced"
    );
    assert_eq!(mi.token(scopes::STORAGE).await.unwrap(), next);
}

#[tokio::test]
async fn a_user_assigned_identity_sends_to_service_bus_and_logs_in_to_postgresql_refreshing_a_stale_token()
 {
    let id = FakeIdentity::start(Duration::from_secs(3600)).await;
    id.fail_next(&[503]);
    // The PostgreSQL login: a role whose password is the token the endpoint will issue.
    let token = format!("pg-entra-token-{}", uuid::Uuid::new_v4().simple());
    id.fixed_token("https://ossrdbms-aad.database.windows.net", &token);
    // ... but the first one is stale: the refused login must fetch a new token and retry once.
    id.stale_first("https://ossrdbms-aad.database.windows.net");
    let role = format!("mi_app_{}", uuid::Uuid::new_v4().simple());
    let (admin, conn) = tokio_postgres::connect(
        &format!("{}?sslmode=require", crate::azure_pg_tls::tls_url()),
        coremachine::store::connect::tls_connector(&coremachine::config::TlsSettings {
            mode: coremachine::config::SslMode::Require,
            roots: coremachine::config::RootCerts::System,
        })
        .unwrap()
        .unwrap(),
    )
    .await
    .expect("TLS test cluster (scripts/lib/pg_tls.sh)");
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{token}'"))
        .await
        .unwrap();
    run_child(
        &id,
        "child_user_assigned",
        &[("CM_TEST_PG_ROLE", role.clone())],
    )
    .await;
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
    let reqs = id.requests();
    assert!(
        reqs.iter()
            .all(|r| r.client_id.as_deref() == Some("uami-1234")),
        "every request names the user-assigned identity: {reqs:?}"
    );
    assert!(
        reqs.len() >= 3,
        "503 retried, then Service Bus and PostgreSQL tokens: {reqs:?}"
    );
}

#[tokio::test]
#[ignore = "run in a child process by a_user_assigned_identity_sends_to_service_bus_and_logs_in_to_postgresql_refreshing_a_stale_token"]
async fn child_user_assigned() {
    in_child();
    // The endpoint answers 503 first: azure_identity retries.
    let mi = ManagedIdentity::new(Some("uami-1234".into())).expect("managed identity");
    let t = mi
        .token(scopes::SERVICE_BUS)
        .await
        .expect("token after a 503");
    assert!(t.secret().starts_with("mi-token-servicebus.azure.net-"));

    // Service Bus with the identity, as configured in Azure.
    let tokens: Vec<String> = (1..=5)
        .map(|n| format!("mi-token-servicebus.azure.net-{n}"))
        .collect();
    let fake = FakeServiceBus::bearer("none").await;
    fake.accept_tokens(&tokens.iter().map(String::as_str).collect::<Vec<_>>());
    let m: HashMap<&str, String> = HashMap::from([
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "ns.servicebus.windows.net".into(),
        ),
        ("ServiceBusConnection__clientId", "uami-1234".into()),
        ("SERVICE_BUS_REST_ENDPOINT", fake.url.clone()),
    ]);
    let sender = ServiceBusSender::new(
        ServiceBusSettings::from_lookup(&|k: &str| m.get(k).cloned()).unwrap(),
    )
    .unwrap();
    let msg = coremachine::transport::OutboundMessage {
        queue: "geospatial-jobs".into(),
        message_id: "j:s1:a1".into(),
        body: json!({"job_id": "j", "stage": 1}).to_string(),
        properties: Default::default(),
        correlation_id: None,
        scheduled_at: None,
        job_id: Some("j".into()),
    };
    sender
        .send_all(&[msg])
        .await
        .expect("sent with the managed identity's token");
    fake.assert_clean();
    assert_eq!(fake.received().len(), 1);

    // PostgreSQL: the token is the password; TLS verified against the test CA.
    let role = std::env::var("CM_TEST_PG_ROLE").unwrap();
    let url = crate::azure_pg_tls::tls_url().replace("postgres@", &format!("{role}@"));
    let m: HashMap<&str, String> = HashMap::from([
        (
            "DATABASE_URL",
            format!(
                "{url}?sslmode=verify-full&sslrootcert={}",
                crate::azure_pg_tls::test_ca()
            ),
        ),
        ("USE_MANAGED_IDENTITY", "true".into()),
        ("MANAGED_IDENTITY_CLIENT_ID", "uami-1234".into()),
    ]);
    let settings = Settings::from_lookup(TransportMode::LocalQueue, |k| m.get(k).cloned()).unwrap();
    let pool = coremachine::store::connect::pool_for_settings(&settings).unwrap();
    let c = coremachine::store::client(&pool, "logging in with the token")
        .await
        .expect("login with the token");
    let who: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, role);

    // Without the identity the same login is refused (the token really is the password).
    let m: HashMap<&str, String> = HashMap::from([(
        "DATABASE_URL",
        format!(
            "{url}?sslmode=verify-full&sslrootcert={}",
            crate::azure_pg_tls::test_ca()
        ),
    )]);
    let settings = Settings::from_lookup(TransportMode::LocalQueue, |k| m.get(k).cloned()).unwrap();
    let pool = coremachine::store::connect::pool_for_settings(&settings).unwrap();
    let e = coremachine::store::client(&pool, "logging in without a password")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("password"), "{e}");
}
