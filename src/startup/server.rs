//! The HTTP server of every mode: hyper HTTP/1 connections to the router, with the limits of
//! [`ServerSettings`].
//!
//! Why not `axum::serve`: it has no timeouts, so a client that opens a connection and sends
//! nothing, half a head, or a body shorter than its `Content-Length` holds the connection (and a
//! handler waiting on the body) forever. Here a watchdog per connection closes it when its
//! request head does not arrive within the header-read timeout of its first byte, or when it
//! sits idle (no request in flight, nothing received) for the idle timeout; a request body not
//! complete within the body-read timeout of its head fails the read with [`BodyReadTimeout`]
//! (the API answers 408). Time spent in a handler is never counted: the Functions host holds a
//! connection open for as long as an invocation runs.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::ServerSettings;

/// The error a request body read fails with when the body did not arrive in time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {} s of the request head", .0.as_secs_f64())]
pub(crate) struct BodyReadTimeout(pub Duration);

/// Serves `app` on `listener` until `shutdown`, then lets in-flight requests finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerSettings,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Dropping the set (an aborted server task) aborts every connection with it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: wait a little instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let conn = connection(stream, app.clone(), limits.clone(), shutdown.clone());
                        connections.spawn(async move {
                            conn.await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        connections.spawn(refuse(stream, limits.max_connections));
                    }
                }
            }
        }
    }
    while connections.join_next().await.is_some() {}
}

/// Over the connection limit: a 503 envelope, then the connection is closed.
async fn refuse(mut stream: TcpStream, limit: usize) {
    tracing::warn!(limit, "connection refused: too many open connections");
    let body = serde_json::json!({
        "error": "service_unavailable",
        "message": format!("too many open connections (the limit is {limit}, HTTP_MAX_CONNECTIONS); try again"),
        "details": [],
        "request_id": uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339(),
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// What the watchdog of one connection knows.
#[derive(Debug)]
struct Activity {
    /// Requests whose response has not been written to the end.
    in_flight: usize,
    /// When the first byte of a request head arrived (no request in flight).
    head_started: Option<Instant>,
    /// When the last response ended or the connection opened.
    last_activity: Instant,
}

type Shared = Arc<Mutex<Activity>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Activity> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the watchdog closes the connection now, if it does.
fn overdue(a: &Activity, now: Instant, limits: &ServerSettings) -> Option<&'static str> {
    if a.in_flight > 0 {
        return None;
    }
    match a.head_started {
        Some(t) if now.duration_since(t) >= limits.header_read_timeout => {
            Some("request head not complete within the header-read timeout")
        }
        None if now.duration_since(a.last_activity) >= limits.idle_timeout => {
            Some("idle for the idle timeout")
        }
        _ => None,
    }
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: ServerSettings,
    shutdown: CancellationToken,
) {
    let activity: Shared = Arc::new(Mutex::new(Activity {
        in_flight: 0,
        head_started: None,
        last_activity: Instant::now(),
    }));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let body_timeout = limits.body_read_timeout;
    let svc_activity = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = InFlight::start(svc_activity.clone());
        let req = req.map(|b| Body::new(TimedBody::new(b, body_timeout)));
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await?;
            // The request counts as in flight until its response body is written to the end.
            Ok::<_, std::convert::Infallible>(response.map(|b| Tracked {
                inner: b,
                _guard: guard,
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let tick = [limits.header_read_timeout, limits.idle_timeout]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1))
        .div_f64(4.0)
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    let watchdog = async {
        let mut every = tokio::time::interval(tick);
        loop {
            every.tick().await;
            if let Some(why) = overdue(&lock(&activity), Instant::now(), &limits) {
                return why;
            }
        }
    };
    tokio::select! {
        r = &mut conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        }
        why = watchdog => {
            // Dropping the connection closes the socket.
            tracing::debug!(reason = why, "HTTP connection closed by the server");
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A request in flight: counted from its head until its response body is done (or dropped).
struct InFlight(Shared);

impl InFlight {
    fn start(activity: Shared) -> Self {
        {
            let mut a = lock(&activity);
            a.in_flight += 1;
            a.head_started = None;
        }
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = lock(&self.0);
        a.in_flight = a.in_flight.saturating_sub(1);
        a.head_started = None;
        a.last_activity = Instant::now();
    }
}

/// The socket, noting when a request head starts arriving.
struct Watched {
    inner: TcpStream,
    activity: Shared,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let mut a = lock(&self.activity);
            if a.in_flight == 0 && a.head_started.is_none() {
                a.head_started = Some(Instant::now());
            }
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that must be complete by a deadline.
struct TimedBody {
    inner: Incoming,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(f.map(|r| r.map_err(Into::into))),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyReadTimeout(self.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_with_nothing_in_flight_is_ever_overdue() {
        let limits = ServerSettings::default();
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(100_000);
        let busy = Activity {
            in_flight: 1,
            head_started: None,
            last_activity: t0,
        };
        assert_eq!(overdue(&busy, later, &limits), None, "a long invocation");
        let half_head = Activity {
            in_flight: 0,
            head_started: Some(t0),
            last_activity: t0,
        };
        assert_eq!(
            overdue(&half_head, t0 + Duration::from_secs(29), &limits),
            None
        );
        assert!(overdue(&half_head, t0 + Duration::from_secs(30), &limits).is_some());
        let idle = Activity {
            in_flight: 0,
            head_started: None,
            last_activity: t0,
        };
        assert_eq!(overdue(&idle, t0 + Duration::from_secs(299), &limits), None);
        assert!(overdue(&idle, t0 + Duration::from_secs(300), &limits).is_some());
    }
}
