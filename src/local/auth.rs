//! The host's HTTP front door, emulated for local mode: each request under the route prefix is
//! matched to the HTTP function folder whose `route` and `methods` it fits
//! ([`HttpRoutes`]: literal segments win over parameters, as in ASP.NET routing), and that
//! folder's `authLevel` is enforced the way the Functions host does it: a key in `x-functions-key` or `?code=`; `function` accepts a function
//! key or the master key, `admin` only the master key, `anonymous` anything.
//!
//! Keys come from local settings (`LOCAL_FUNCTION_KEYS`, `LOCAL_ADMIN_KEY`). With none configured
//! nothing is checked, as with `func start`. With keys configured, a path no function serves is a
//! 404, as under the host, and every method a route serves is checked (`HEAD` is a `GET`). The
//! trigger routes (queue and timer function folders) then accept only the emulator's own calls:
//! the per-process [`EmulatorKey`] it sends, or the master key; under the real host they are not
//! reachable from outside at all. Keys are never logged.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::config::{HttpSettings, Secret};
use crate::startup::layout::{AppLayout, Trigger};
use crate::startup::routes::{AuthLevel, HttpRoutes};

/// The key the host emulator presents on trigger invocations: random, minted once per process,
/// never written anywhere, so only this process's emulator (or a holder of the master key) can
/// invoke a trigger route when keys are configured.
#[derive(Clone, Debug)]
pub struct EmulatorKey(Secret);

impl EmulatorKey {
    /// A fresh random key (256 bits).
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(Secret::new(hex::encode(bytes)))
    }
    /// The value, for the emulator's `x-functions-key` header.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
    fn matches(&self, candidate: &str) -> bool {
        self.0.matches(candidate)
    }
}

struct Guard {
    routes: HttpRoutes,
    /// Trigger (queue and timer) function names: the handler's own routes at the root.
    triggers: Vec<String>,
    keys: HttpSettings,
    emulator_key: EmulatorKey,
}

/// Wraps `app` with the host's route matching and key checks (a no-op without configured keys).
pub fn guard(
    app: Router,
    layout: &AppLayout,
    keys: &HttpSettings,
    emulator_key: &EmulatorKey,
) -> Router {
    if !keys.keys_configured() {
        tracing::info!(
            "local mode: no LOCAL_FUNCTION_KEYS / LOCAL_ADMIN_KEY configured, HTTP keys are not checked"
        );
        return app;
    }
    let triggers = layout
        .functions
        .iter()
        .filter(|f| !matches!(f.trigger, Trigger::Http { .. }))
        .map(|f| f.name.clone())
        .collect();
    let state = Arc::new(Guard {
        routes: HttpRoutes::from_layout(layout),
        triggers,
        keys: keys.clone(),
        emulator_key: emulator_key.clone(),
    });
    app.layer(axum::middleware::from_fn_with_state(state, check))
}

fn presented_key(req: &Request) -> Option<String> {
    if let Some(k) = req
        .headers()
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        return Some(k.to_string());
    }
    req.uri().query().and_then(|q| {
        q.split('&').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k == "code").then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    })
}

async fn check(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    // Matched like the routes themselves might be: any case, with or without slashes around.
    let trimmed = req.uri().path().trim_matches('/');
    if let Some(trigger) = g.triggers.iter().find(|t| t.eq_ignore_ascii_case(trimmed)) {
        let key = presented_key(&req);
        let allowed = key.as_deref().is_some_and(|k| {
            g.emulator_key.matches(k) || g.keys.admin_key.as_ref().is_some_and(|a| a.matches(k))
        });
        if allowed {
            return next.run(req).await;
        }
        return ApiError::unauthorized(format!(
            "function {trigger} is invoked by the host only: it needs the host's key (the master key)"
        ))
        .into_response();
    }
    let route = match g.routes.find(req.method(), req.uri().path()) {
        Ok(None) => return next.run(req).await,
        // A function has the path but not the method: refused here, before any handler runs.
        Err(true) => {
            let path = req.uri().path();
            let allow: Vec<&str> = [
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::PATCH,
            ]
            .iter()
            .filter(|m| matches!(g.routes.find(m, path), Ok(Some(_))))
            .map(Method::as_str)
            .collect();
            let mut resp = ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "{} is not allowed on {}",
                    req.method(),
                    path.chars().take(200).collect::<String>()
                ),
            )
            .into_response();
            if let Ok(v) = allow.join(",").parse() {
                resp.headers_mut().insert(axum::http::header::ALLOW, v);
            }
            return resp;
        }
        Err(false) => {
            return ApiError::not_found(format!(
                "no function serves {}",
                req.uri().path().chars().take(200).collect::<String>()
            ))
            .into_response();
        }
        Ok(Some(r)) => r,
    };
    if route.auth == AuthLevel::Anonymous {
        return next.run(req).await;
    }
    let Some(key) = presented_key(&req) else {
        return ApiError::unauthorized(format!(
            "function {} requires a key (x-functions-key header or code query parameter)",
            route.function
        ))
        .into_response();
    };
    let is_admin = g.keys.admin_key.as_ref().is_some_and(|k| k.matches(&key));
    let is_function = g.keys.function_keys.iter().any(|k| k.matches(&key));
    let allowed = match route.auth {
        AuthLevel::Admin => is_admin,
        _ => is_admin || is_function,
    };
    if allowed {
        return next.run(req).await;
    }
    let why = if route.auth == AuthLevel::Admin && is_function {
        format!(
            "function {} requires the admin (master) key; a function key is not enough",
            route.function
        )
    } else {
        format!("the key is not valid for function {}", route.function)
    };
    ApiError::unauthorized(why).into_response()
}
