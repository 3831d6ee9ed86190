//! The host's HTTP front door, emulated for local mode: each request under the route prefix is
//! matched to the HTTP function folder whose `route` and `methods` it fits (literal segments win
//! over parameters, as in ASP.NET routing), and that folder's `authLevel` is enforced the way the
//! Functions host does it: a key in `x-functions-key` or `?code=`; `function` accepts a function
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

use super::functions::{AppLayout, Trigger};
use crate::api::ApiError;
use crate::config::{HttpSettings, Secret};

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

/// `authLevel` of an HTTP function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLevel {
    /// No key needed.
    Anonymous,
    /// A function key or the master key.
    Function,
    /// The master key only.
    Admin,
}

impl AuthLevel {
    fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "anonymous" => AuthLevel::Anonymous,
            "admin" => AuthLevel::Admin,
            // "function", "user", "system" and anything else: at least a function key.
            _ => AuthLevel::Function,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    Param,
    CatchAll,
}

/// One HTTP function's route.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// Function (folder) name.
    pub function: String,
    /// Allowed methods, upper case (empty = any).
    pub methods: Vec<String>,
    /// Its auth level.
    pub auth: AuthLevel,
    segments: Vec<Seg>,
}

impl HttpRoute {
    /// Literal segments matched (higher wins), when `path` (without the prefix) fits.
    fn score(&self, path: &[&str]) -> Option<usize> {
        let mut lits = 0;
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Seg::CatchAll => return Some(lits),
                _ if i >= path.len() => return None,
                Seg::Lit(l) if l.eq_ignore_ascii_case(path[i]) => lits += 1,
                Seg::Lit(_) => return None,
                Seg::Param if path[i].is_empty() => return None,
                Seg::Param => {}
            }
        }
        (self.segments.len() == path.len()).then_some(lits)
    }
}

/// Every HTTP function of the app, and the route prefix (`extensions.http.routePrefix`).
#[derive(Debug, Clone)]
pub struct HttpRoutes {
    prefix: String,
    routes: Vec<HttpRoute>,
}

impl HttpRoutes {
    /// Reads the HTTP functions of an app layout.
    pub fn from_layout(layout: &AppLayout) -> Self {
        let prefix = layout
            .host
            .raw
            .pointer("/extensions/http/routePrefix")
            .and_then(|v| v.as_str())
            .unwrap_or("api")
            .trim_matches('/')
            .to_string();
        let routes = layout
            .functions
            .iter()
            .filter_map(|f| match &f.trigger {
                Trigger::Http {
                    route,
                    methods,
                    auth_level,
                } => Some(HttpRoute {
                    function: f.name.clone(),
                    methods: methods.clone(),
                    auth: AuthLevel::parse(auth_level),
                    segments: route
                        .as_deref()
                        .unwrap_or(&f.name)
                        .trim_matches('/')
                        .split('/')
                        .map(|s| {
                            if s.starts_with("{*") {
                                Seg::CatchAll
                            } else if s.starts_with('{') && s.ends_with('}') {
                                Seg::Param
                            } else {
                                Seg::Lit(s.to_string())
                            }
                        })
                        .collect(),
                }),
                _ => None,
            })
            .collect();
        Self { prefix, routes }
    }

    /// The function serving `method path`: `Ok(Some)` found, `Ok(None)` the path is not under the
    /// prefix, `Err(true)` a function has the path but not the method, `Err(false)` none has it.
    pub fn find(&self, method: &Method, path: &str) -> Result<Option<&HttpRoute>, bool> {
        // The router answers HEAD with the GET handler, so HEAD is checked as GET.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let trimmed = path.trim_matches('/');
        let rest = if self.prefix.is_empty() {
            trimmed
        } else {
            match trimmed.strip_prefix(self.prefix.as_str()) {
                Some(r) if r.is_empty() || r.starts_with('/') => r.trim_start_matches('/'),
                _ => return Ok(None),
            }
        };
        let segs: Vec<&str> = rest.split('/').collect();
        let mut best: Option<(usize, &HttpRoute)> = None;
        let mut path_known = false;
        for r in &self.routes {
            let Some(score) = r.score(&segs) else {
                continue;
            };
            path_known = true;
            let method_ok = r.methods.is_empty() || r.methods.iter().any(|m| m == method.as_str());
            if method_ok && best.is_none_or(|(s, _)| score > s) {
                best = Some((score, r));
            }
        }
        match best {
            Some((_, r)) => Ok(Some(r)),
            None => Err(path_known),
        }
    }

    /// `path` as the handler's routes spell it, when it fits a function's route the way the host
    /// matches (literal segments case-insensitively, a trailing slash ignored): the prefix and
    /// literal segments as declared, parameters exactly as sent. `None`: no function has it.
    pub fn canonical_path(&self, path: &str) -> Option<String> {
        let trimmed = path.trim_matches('/');
        let (prefix, rest) = match trimmed.split_once('/') {
            _ if self.prefix.is_empty() => ("", trimmed),
            Some((p, r)) if p.eq_ignore_ascii_case(&self.prefix) => (self.prefix.as_str(), r),
            None if trimmed.eq_ignore_ascii_case(&self.prefix) => (self.prefix.as_str(), ""),
            _ => return None,
        };
        let segs: Vec<&str> = rest.split('/').collect();
        let (_, route) = self
            .routes
            .iter()
            .filter_map(|r| r.score(&segs).map(|s| (s, r)))
            .max_by_key(|(s, _)| *s)?;
        let mut out = String::new();
        if !prefix.is_empty() {
            out.push('/');
            out.push_str(prefix);
        }
        for (i, seg) in route.segments.iter().enumerate() {
            match seg {
                Seg::CatchAll => {
                    out.push('/');
                    out.push_str(&segs[i..].join("/"));
                    break;
                }
                Seg::Lit(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                Seg::Param => {
                    out.push('/');
                    out.push_str(segs[i]);
                }
            }
        }
        Some(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> HttpRoutes {
        let layout = AppLayout::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
            .expect("the app layout reads");
        HttpRoutes::from_layout(&layout)
    }

    #[test]
    fn canonical_paths_keep_parameters_as_sent() {
        let r = routes();
        let id = "AbC".repeat(3);
        let c = |p: &str| r.canonical_path(p);
        assert_eq!(
            c(&format!("/API/Jobs/Status/{id}/")),
            Some(format!("/api/jobs/status/{id}"))
        );
        assert_eq!(c("/api/jobs/TYPES"), Some("/api/jobs/types".into()));
        assert_eq!(
            c(&format!("/api/jobs/{id}/Events/Summary")),
            Some(format!("/api/jobs/{id}/events/summary"))
        );
        assert_eq!(c("/api/UI/App.JS"), Some("/api/ui/App.JS".into()));
        assert_eq!(c("/api/nothing/here"), None);
        assert_eq!(c("/tasks-queue-trigger"), None);
        assert_eq!(c("/"), None);
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        let r = routes();
        let f = |m: Method, p: &str| r.find(&m, p).ok().flatten().map(|r| r.function.clone());
        assert_eq!(
            f(Method::GET, "/api/jobs/types").as_deref(),
            Some("http-job-types")
        );
        assert_eq!(
            f(Method::GET, &format!("/api/jobs/{}", "a".repeat(64))).as_deref(),
            Some("http-job-get")
        );
        assert_eq!(
            f(Method::GET, "/api/jobs/status/x").as_deref(),
            Some("http-job-status")
        );
        assert_eq!(
            f(Method::GET, "/api/health").as_deref(),
            Some("http-health")
        );
        assert_eq!(r.find(&Method::GET, "/api/nothing/here"), Err(false));
        assert_eq!(r.find(&Method::DELETE, "/api/jobs/types"), Err(true));
        assert!(matches!(
            r.find(&Method::POST, "/tasks-queue-trigger"),
            Ok(None)
        ));
    }
}
