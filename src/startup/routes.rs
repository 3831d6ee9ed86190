//! The app's HTTP functions as the host routes them: each folder's `route` (under
//! `extensions.http.routePrefix`), `methods` and `authLevel`. A request matches the function
//! whose route it fits, literal segments winning over parameters as in ASP.NET routing; every
//! mode routes a request by the function's declared spelling of its path
//! ([`HttpRoutes::canonical_path`]), and local mode's key checks (`local::auth`) use the match.

use axum::http::Method;

use super::layout::{AppLayout, Trigger};

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
    pub(crate) fn canonical_path(&self, path: &str) -> Option<String> {
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
