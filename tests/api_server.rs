//! The HTTP server's own limits, with real slow TCP clients against the real server on
//! 127.0.0.1: a head, a body or an idle connection that takes too long is closed, a legitimate
//! long invocation is not, over the connection limit a client gets a 503 envelope, and every
//! refusal the router can see is the error envelope.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestApp;

/// How long a test waits for the server to close a connection: generous, never a measurement.
const BOUND: Duration = Duration::from_secs(30);

/// An app whose header, body and idle timeouts are one second.
async fn impatient(max_connections: usize) -> TestApp {
    TestApp::start_opts(|o| {
        o.settings.server.header_read_timeout = Duration::from_secs(1);
        o.settings.server.body_read_timeout = Duration::from_secs(1);
        o.settings.server.idle_timeout = Duration::from_secs(1);
        o.settings.server.max_connections = max_connections;
    })
    .await
}

fn addr(t: &TestApp) -> String {
    t.base.trim_start_matches("http://").to_string()
}

/// Everything the server sends until it closes the connection (panics past [`BOUND`]).
async fn read_until_closed(s: &mut TcpStream, what: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(BOUND, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "{what}: the connection was still open after {BOUND:?}"
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `bytes` on a new connection and reads until the server closes it.
async fn exchange(t: &TestApp, bytes: &[u8], what: &str) -> String {
    let mut s = TcpStream::connect(addr(t)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_until_closed(&mut s, what).await
}

/// The JSON body of a raw HTTP/1.1 response.
fn body_of(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON body ({e}): {response}"))
}

/// Regression (issue 13.6): idle, half-sent-head and half-sent-body connections were all still
/// open after 100 s, and a body shorter than its Content-Length was waited on forever.
#[tokio::test]
async fn slow_clients_are_closed_and_a_long_invocation_is_not() {
    let t = impatient(64).await;
    // A task that runs three times longer than every timeout, through the real trigger route.
    let id = t
        .submit("shapes1", json!({"tasks": 1, "sleep_ms": 3000}))
        .await;
    let idle = TcpStream::connect(addr(&t)).await.unwrap();
    let half_head = b"POST /api/jobs/submit/hello_world HTTP/1.1\r\nHost: x\r\nContent-Ty".to_vec();
    let half_body = b"POST /api/jobs/submit/hello_world HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"n\": ".to_vec();
    let (a, b, c, d) = tokio::join!(
        async {
            let mut idle = idle;
            read_until_closed(&mut idle, "an idle connection").await
        },
        exchange(&t, &half_head, "half a request head"),
        exchange(&t, &half_body, "a body shorter than its Content-Length"),
        async {
            // A keep-alive connection that goes quiet after one answered request.
            let mut s = TcpStream::connect(addr(&t)).await.unwrap();
            s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            read_until_closed(&mut s, "an idle keep-alive connection").await
        },
    );
    assert_eq!(a, "", "nothing is sent on an idle connection");
    assert_eq!(b, "", "an incomplete head gets no answer");
    assert!(c.starts_with("HTTP/1.1 408"), "{c}");
    let v = body_of(&c);
    assert_eq!(v["error"], "request_timeout", "{v}");
    assert_eq!(v["details"][0]["rule"], "body_read_timeout", "{v}");
    assert!(d.starts_with("HTTP/1.1 200"), "{d}");
    assert_eq!(
        t.wait_terminal(&id, Duration::from_secs(60)).await,
        "completed",
        "the three-second invocation outlived every timeout"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn over_the_connection_limit_a_client_gets_a_503_envelope_and_is_closed() {
    let t = TestApp::start_opts(|o| {
        o.emulator = false;
        o.settings.server.max_connections = 2;
    })
    .await;
    // Two connections the server has taken (each answered once, kept alive).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr(&t)).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(BOUND, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let third = exchange(
        &t,
        b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n",
        "a third",
    )
    .await;
    assert!(third.starts_with("HTTP/1.1 503"), "{third}");
    let v = body_of(&third);
    assert_eq!(v["error"], "service_unavailable", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("HTTP_MAX_CONNECTIONS"),
        "{v}"
    );
    // A slot that frees up serves the next connection.
    drop(held.pop());
    let mut served = false;
    for _ in 0..100 {
        let r = exchange(
            &t,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "after",
        )
        .await;
        if r.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "a freed slot is used again");
    t.cleanup().await;
}

/// Regression (issue 13.5): a malformed chunked body answered 413 "larger than 65536 bytes", the
/// 415 message printed Rust Debug text, and long targets or headers had no envelope.
#[tokio::test]
async fn body_read_errors_say_what_was_wrong_and_long_targets_and_headers_get_the_envelope() {
    let t = TestApp::start_opts(|o| o.emulator = false).await;
    let bad_chunked = b"POST /api/jobs/submit/hello_world HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    let r = exchange(&t, bad_chunked, "a malformed chunked body").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let v = body_of(&r);
    assert_eq!(v["error"], "body_unreadable", "{v}");
    assert!(
        !v["message"].as_str().unwrap().contains("larger than"),
        "{v}"
    );

    // A chunked body that really is too large is still a 413.
    let mut big = b"POST /api/jobs/submit/hello_world HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..20 {
        big.extend_from_slice(format!("1000\r\n{}\r\n", " ".repeat(4096)).as_bytes());
    }
    big.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(&t, &big, "a 80 KB chunked body").await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");

    let (s, b) = t
        .post_raw("/api/jobs/submit/hello_world", b"{}".to_vec(), "text/plain")
        .await;
    assert_eq!(s, 415, "{b}");
    assert_eq!(
        b["message"],
        "expected Content-Type application/json, got \"text/plain\""
    );

    let long_target = format!("/api/jobs?job_type={}", "a".repeat(9000));
    let r = t
        .http
        .get(format!("{}{long_target}", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 414);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "uri_too_long", "{v}");
    let r = t
        .http
        .get(format!("{}/api/health", t.base))
        .header("x-filler", "f".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 431);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "headers_too_large", "{v}");
    t.cleanup().await;
}
