//! A real HTTP receiver for webhook tests, scripted per request: it records every
//! request (headers, body, arrival time) and answers what the script says.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// 1-based number of this request on its path.
    pub nth: usize,
    pub at: Instant,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The status it is answered with (after any delay; a client may give up first).
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (slow or hanging endpoints).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: vec![], body: String::new(), delay: Duration::ZERO }
    }
    pub fn ok() -> Reply {
        Reply::status(200)
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn with_body(mut self, b: &str) -> Reply {
        self.body = b.into();
        self
    }
    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// `(path, nth request on that path) -> reply`.
pub type Script = Arc<dyn Fn(&str, usize) -> Reply + Send + Sync>;

struct Shared {
    script: Script,
    log: Mutex<Vec<Received>>,
    counts: Mutex<HashMap<String, usize>>,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// Starts on a free loopback port; requests go to `{url}/{path}`.
    pub fn start(script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let shared =
            Arc::new(Shared { script: Arc::new(script), log: Mutex::new(vec![]), counts: Mutex::new(HashMap::new()) });
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route("/{*path}", post(handle)).with_state(shared.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, shared, _runtime: runtime }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Requests on `path` (without the leading slash).
    pub fn on(&self, path: &str) -> Vec<Received> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Requests on `path` answered 2xx.
    pub fn delivered(&self, path: &str) -> Vec<Received> {
        self.on(path).into_iter().filter(|r| (200..300).contains(&r.status)).collect()
    }

    /// Waits until `path` has at least `n` 2xx-answered requests.
    pub fn wait_delivered(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        crate::poll(timeout, || self.delivered(path), |got| got.len() >= n)
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let nth = {
        let mut counts = shared.counts.lock().unwrap();
        let c = counts.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    let reply = (shared.script)(&path, nth);
    // Logged on arrival: a client that times out drops the connection, and with it this handler.
    let headers = headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    shared.log.lock().unwrap().push(Received { path, nth, at, headers, body: body.to_vec(), status: reply.status });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    resp
}
