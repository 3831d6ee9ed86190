//! A local stand-in for the Application Insights ingestion endpoint, shared by the telemetry and
//! secrets tests: it decodes what the real exporter uploads (gzip JSON envelopes).

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};

/// A local stand-in for the Application Insights ingestion endpoint (`POST /v2/track`), on its own
/// thread and runtime so it answers while a test thread blocks in a flush.
pub struct FakeIngestion {
    /// Every envelope received, in order.
    pub items: Arc<Mutex<Vec<Value>>>,
    /// Base URL (the connection string's IngestionEndpoint).
    pub url: String,
    /// Requests that were not valid gzip JSON arrays.
    pub bad_requests: Arc<Mutex<Vec<String>>>,
}

impl FakeIngestion {
    pub fn start() -> Self {
        let items = Arc::new(Mutex::new(Vec::new()));
        let bad_requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (it, bad) = (items.clone(), bad_requests.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().route(
                    "/v2/track",
                    axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                        let (it, bad) = (it.clone(), bad.clone());
                        async move {
                            match decode(&headers, &body) {
                                Ok(envelopes) => {
                                    let n = envelopes.len();
                                    it.lock().unwrap().extend(envelopes);
                                    axum::Json(json!({"itemsReceived": n, "itemsAccepted": n, "errors": []}))
                                }
                                Err(e) => {
                                    bad.lock().unwrap().push(e);
                                    axum::Json(json!({"itemsReceived": 0, "itemsAccepted": 0, "errors": []}))
                                }
                            }
                        }
                    }),
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Self {
            items,
            url: format!("http://{addr}/"),
            bad_requests,
        }
    }

    pub fn connection_string(&self) -> String {
        format!(
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={}",
            self.url
        )
    }

    pub fn items(&self) -> Vec<Value> {
        self.items.lock().unwrap().clone()
    }
}

fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Value>, String> {
    let gz = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let text = if gz {
        let mut s = String::new();
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut s)
            .map_err(|e| format!("not gzip: {e}"))?;
        s
    } else {
        String::from_utf8(body.to_vec()).map_err(|e| e.to_string())?
    };
    match serde_json::from_str::<Value>(&text).map_err(|e| e.to_string())? {
        Value::Array(a) => Ok(a),
        other => Err(format!("not an array: {other}")),
    }
}
