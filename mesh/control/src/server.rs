//! The control plane server: [`ControlPlane`] owns the [`State`], watches the files,
//! and answers the HTTP API (see the crate docs for the protocol).

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::files::read_sources;
use crate::registry::RegistryFile;
use crate::state::{Change, Published, Rejection, State, Status};
use crate::wire::{Ack, MAX_REQUEST_BYTES, ProxyIdentity, Source};

/// Largest YAML body `POST /v1/config` accepts.
pub const MAX_CONFIG_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The header every `/v1/config` answer carries: the version in service.
pub const VERSION_HEADER: &str = "x-meshrig-config-version";

/// How the control plane runs.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Istio YAML files or directories, watched. Default: none.
    pub config: Vec<PathBuf>,
    /// The registry file, watched. Default: none (no services).
    pub registry: Option<PathBuf>,
    /// How often the watcher re-reads the files. Default 500 ms.
    pub poll_interval: Duration,
    /// How long a `GET /v1/config` waits for a newer version before answering 304.
    /// Default 30 s.
    pub long_poll_timeout: Duration,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            config: Vec::new(),
            registry: None,
            poll_interval: Duration::from_millis(500),
            long_poll_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A file could not be read.
    #[error("{0}")]
    Read(String),
    /// The registry file is not valid.
    #[error("{path}: {message}")]
    Registry { path: String, message: String },
    /// The configuration has errors.
    #[error("{}", .0.errors.join("\n"))]
    Invalid(Rejection),
}

/// The control plane. Share it as `Arc<ControlPlane>`.
#[derive(Debug)]
pub struct ControlPlane {
    state: Mutex<State>,
    version: watch::Sender<u64>,
    options: ControlOptions,
    /// What the watcher last read (files, registry text), so an unchanged bad file
    /// is rejected and logged once, not on every poll.
    last_read: Mutex<LastRead>,
}

/// The watched files as last read (or why they could not be), and the registry
/// file's text (if one is watched).
type LastRead = (Result<Vec<Source>, String>, Option<Result<String, String>>);

impl ControlPlane {
    /// Reads the files of `options` as version 1.
    pub fn new(options: ControlOptions) -> Result<Arc<Self>, ControlError> {
        let files = read_sources(&options.config).map_err(ControlError::Read)?;
        let registry_text = match &options.registry {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ControlError::Read(format!("{}: {e}", path.display())))?,
            ),
            None => None,
        };
        let registry = match (&registry_text, &options.registry) {
            (Some(text), Some(path)) => {
                RegistryFile::parse(text).map_err(|e| ControlError::Registry {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            _ => RegistryFile::default(),
        };
        let plane = Self::build(files.clone(), registry, options)?;
        *plane.lock_last_read() = (Ok(files), registry_text.map(Ok));
        Ok(plane)
    }

    /// A control plane serving `sources` and `registry` as version 1, with nothing
    /// to watch (`options.config` and `options.registry` are ignored).
    pub fn with_sources(
        sources: Vec<Source>,
        registry: RegistryFile,
        mut options: ControlOptions,
    ) -> Result<Arc<Self>, ControlError> {
        options.config.clear();
        options.registry = None;
        Self::build(sources, registry, options)
    }

    fn build(
        files: Vec<Source>,
        registry: RegistryFile,
        options: ControlOptions,
    ) -> Result<Arc<Self>, ControlError> {
        let window = options.long_poll_timeout + Duration::from_secs(10);
        let state = State::new(files.clone(), registry, window).map_err(ControlError::Invalid)?;
        let (version, _) = watch::channel(state.current().version);
        Ok(Arc::new(ControlPlane {
            state: Mutex::new(state),
            version,
            options,
            last_read: Mutex::new((Ok(files), None)),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_last_read(&self) -> MutexGuard<'_, LastRead> {
        self.last_read.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The version in service.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// The version in service, with what it was compiled from.
    pub fn current(&self) -> Arc<Published> {
        self.lock().current()
    }

    /// The status report (as `GET /v1/status`).
    pub fn status(&self) -> Status {
        self.lock().status(Instant::now())
    }

    /// Publishes `sources` on top of the files (each replaces an earlier published
    /// source of the same name). Returns the version now in service, or why the
    /// change was rejected (the last good version stays).
    pub fn publish(&self, sources: Vec<Source>) -> Result<u64, Rejection> {
        let change = self.lock().publish(sources, Instant::now());
        self.settle(change)
    }

    fn settle(&self, change: Change) -> Result<u64, Rejection> {
        match change {
            Change::Unchanged => Ok(self.version()),
            Change::Published(v) => {
                eprintln!("meshrig control: published version {v}");
                self.version.send_replace(v);
                Ok(v)
            }
            Change::Rejected(r) => {
                eprintln!("meshrig control: {}", r.line());
                Err(r)
            }
        }
    }

    /// Re-reads the watched files and registry once; publishes what changed. A file
    /// that cannot be read, fails to parse or has error findings is rejected (logged
    /// once while its content stays the same) and the last good version stays.
    pub fn reload(&self) {
        if !self.options.config.is_empty() {
            let read = read_sources(&self.options.config);
            let changed = self.lock_last_read().0 != read;
            if changed {
                self.lock_last_read().0 = read.clone();
                match read {
                    Ok(files) => {
                        let change = self.lock().set_files(files, Instant::now());
                        let _ = self.settle(change);
                    }
                    Err(e) => {
                        eprintln!(
                            "meshrig control: cannot read the configuration, keeping version {}: {e}",
                            self.version()
                        );
                    }
                }
            }
        }
        if let Some(path) = &self.options.registry {
            let read =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
            let changed = self.lock_last_read().1.as_ref() != Some(&read);
            if changed {
                self.lock_last_read().1 = Some(read.clone());
                match read {
                    Ok(text) => {
                        let change = self.lock().set_registry_text(&text, Instant::now());
                        let change = match change {
                            Change::Rejected(mut r) => {
                                for e in &mut r.errors {
                                    *e = format!("{}: {e}", path.display());
                                }
                                Change::Rejected(r)
                            }
                            other => other,
                        };
                        let _ = self.settle(change);
                    }
                    Err(e) => eprintln!(
                        "meshrig control: cannot read the registry, keeping version {}: {e}",
                        self.version()
                    ),
                }
            }
        }
    }

    /// Spawns the watcher: [`ControlPlane::reload`] every `poll_interval`. Needs a
    /// tokio runtime; runs until aborted.
    pub fn spawn_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let plane = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(plane.options.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let p = plane.clone();
                if tokio::task::spawn_blocking(move || p.reload())
                    .await
                    .is_err()
                {
                    eprintln!("meshrig control: the watcher panicked; files are no longer watched");
                    return;
                }
            }
        })
    }

    /// Serves the HTTP API on `listener` until `shutdown` resolves.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        eprintln!("meshrig control: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let plane = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let plane = plane.clone();
                    async move { Ok::<_, Infallible>(plane.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Answers one request.
    pub async fn handle(self: &Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/v1/config") => {
                let query = request.uri().query().unwrap_or("").to_owned();
                self.long_poll(&query).await
            }
            (Method::POST, "/v1/config") => {
                let query = request.uri().query().unwrap_or("").to_owned();
                match read_body(request, MAX_CONFIG_BODY_BYTES).await {
                    Ok(body) => self.post_config(&query, body),
                    Err(r) => r,
                }
            }
            (Method::POST, "/v1/ack") => match read_body(request, MAX_REQUEST_BYTES).await {
                Ok(body) => match serde_json::from_slice::<Ack>(&body) {
                    Ok(ack) => {
                        self.lock().ack(&ack, Instant::now());
                        if !ack.ok {
                            eprintln!(
                                "meshrig control: proxy {} rejected version {}: {}",
                                ack.proxy,
                                ack.version,
                                ack.error.as_deref().unwrap_or("(no reason)")
                            );
                        }
                        text(StatusCode::NO_CONTENT, "")
                    }
                    Err(e) => text(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "not an ACK: {e} (expected {{\"proxy\": ID, \"version\": N, \"ok\": true|false, \"error\": TEXT}})\n"
                        ),
                    ),
                },
                Err(r) => r,
            },
            (Method::GET, "/v1/status") => json(StatusCode::OK, &self.status()),
            (Method::GET, "/metrics") => {
                let mut r = text(StatusCode::OK, self.lock().metrics(Instant::now()));
                r.headers_mut().insert(
                    "content-type",
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                r
            }
            (Method::GET, "/ready") => text(StatusCode::OK, "ready\n"),
            (_, "/v1/config" | "/v1/ack" | "/v1/status" | "/metrics" | "/ready") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try GET /v1/config, POST /v1/config, POST /v1/ack, GET /v1/status, /metrics, /ready\n",
            ),
        }
    }

    async fn long_poll(self: &Arc<Self>, query: &str) -> Response<Full<Bytes>> {
        let (identity, known) = match ProxyIdentity::from_query(query) {
            Ok(q) => q,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        let mut rx = self.version.subscribe();
        self.lock().poll_started(&identity, Instant::now());
        let _poll = PollGuard {
            plane: self.clone(),
            id: identity.id.clone(),
        };
        let deadline = tokio::time::Instant::now() + self.options.long_poll_timeout;
        loop {
            let version = *rx.borrow_and_update();
            if version > known {
                let current = self.current();
                let view = current.view_for(&identity);
                let mut r = json(StatusCode::OK, &view);
                set_version(&mut r, view.version);
                return r;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let mut r = text(StatusCode::NOT_MODIFIED, "");
                    set_version(&mut r, version);
                    return r;
                }
            }
        }
    }

    fn post_config(&self, query: &str, body: Bytes) -> Response<Full<Bytes>> {
        let mut name = "api".to_owned();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("name", v)) => match crate::wire::decode(v) {
                    Some(v) if !v.is_empty() => name = v,
                    _ => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            "name: must be a non-empty, percent-encoded string\n",
                        );
                    }
                },
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("unknown parameter '{pair}' (expected name=NAME)\n"),
                    );
                }
            }
        }
        let Ok(yaml) = String::from_utf8(body.to_vec()) else {
            return text(StatusCode::BAD_REQUEST, "the body is not UTF-8 YAML\n");
        };
        match self.publish(vec![Source::new(name, yaml)]) {
            Ok(version) => json(StatusCode::OK, &serde_json::json!({ "version": version })),
            Err(rejection) => json(StatusCode::BAD_REQUEST, &rejection),
        }
    }
}

/// Ends a proxy's poll in the state when the handler finishes or is dropped.
struct PollGuard {
    plane: Arc<ControlPlane>,
    id: String,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        self.plane.lock().poll_ended(&self.id, Instant::now());
    }
}

async fn read_body(
    request: Request<Incoming>,
    limit: usize,
) -> Result<Bytes, Response<Full<Bytes>>> {
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("reading the body (at most {limit} bytes): {e}\n"),
        )),
    }
}

fn set_version(r: &mut Response<Full<Bytes>>, version: u64) {
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        r.headers_mut().insert(VERSION_HEADER, v);
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    r
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = text(status, body);
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}
