//! The load engine: runs one or more targets at once and reports what happened.
//!
//! ```text
//!  pacer thread (per open-loop target)        workers (tokio tasks)
//!  ─ schedule: intended send times ─┐        ┌─ take the next ticket, send, record
//!  ─ precise wait (sleep + spin) ───┼─ ticket ┤   into a stats shard
//!  ─ hands out tickets on time ─────┘  queue  └─ (closed loop: no tickets, back-to-back)
//!                                   collector task: once a second, per-second row + progress
//! ```
//!
//! Open loop: one schedule per target; any free worker takes the next ticket, so a slow
//! connection never holds the schedule back (no per-connection pacing). When every
//! worker is busy, tickets wait in a bounded queue and are sent late; their latency is
//! still measured from the intended time, and the lag is recorded on its own.
//!
//! The engine is a library: `meshrig load` drives it with one constant-rate target; the
//! scenario runner drives it with rate profiles and several targets at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use results::{Recorder, SecondSample};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant as TokioInstant;
use tokio_rustls::TlsConnector;

use crate::client::{Endpoint, H2Slot, HttpVersion, OwnedOutcome, Sender, request_size};
use crate::pacer::PreciseTimer;
use crate::schedule::{ProfileError, RateProfile, Schedule};
use crate::stats::{ErrorKind, Interval, Outcome, Stats};
use crate::tls::{TlsConfigError, TlsOptions, client_config};

/// One target: what to send, where, how fast, for how long. Build it with
/// [`TargetConfig::new`], whose docs list every default.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// `http://` or `https://` URL.
    pub url: Uri,
    /// Default is `GET`.
    pub method: Method,
    /// Extra request headers. A `host` here overrides the URL's authority. Default
    /// adds only `user-agent: meshrig/<version>` (unless given).
    pub headers: HeaderMap,
    /// Request body. Default is empty.
    pub body: Bytes,
    /// Default is HTTP/1.1.
    pub version: HttpVersion,
    /// TLS settings for `https://`. Default verifies against the system roots.
    pub tls: TlsOptions,
    /// TCP connections. Default is 4.
    pub connections: u32,
    /// Concurrent requests per HTTP/2 connection (HTTP/1.1 always uses 1). Default is 16.
    pub streams_per_connection: u32,
    /// Default is [`RateProfile::Max`] (closed loop).
    pub rate: RateProfile,
    /// Stop after this long (no new sends; in-flight requests finish). Default 5 s.
    pub duration: Option<Duration>,
    /// Stop after exactly this many requests. Default is no limit.
    pub max_requests: Option<u64>,
    /// Per-request timeout, connect included. Default is 10 s.
    pub timeout: Duration,
    /// Count responses per value of this response header. Default is none.
    pub group_by_header: Option<HeaderName>,
}

impl TargetConfig {
    /// A target with every default: GET, HTTP/1.1, 4 connections, closed loop, 5 s,
    /// 10 s timeout.
    pub fn new(url: Uri) -> Self {
        Self {
            url,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            version: HttpVersion::Http1,
            tls: TlsOptions::default(),
            connections: 4,
            streams_per_connection: 16,
            rate: RateProfile::Max,
            duration: Some(Duration::from_secs(5)),
            max_requests: None,
            timeout: Duration::from_secs(10),
            group_by_header: None,
        }
    }

    /// Concurrent requests at most: connections × streams (HTTP/2) or connections.
    pub fn concurrency(&self) -> u32 {
        match self.version {
            HttpVersion::Http1 => self.connections,
            HttpVersion::Http2 => self.connections.saturating_mul(self.streams_per_connection),
        }
    }

    fn streams(&self) -> u32 {
        match self.version {
            HttpVersion::Http1 => 1,
            HttpVersion::Http2 => self.streams_per_connection,
        }
    }
}

/// Why a target could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unsupported URL scheme '{0}' (expected http:// or https://)")]
    Scheme(String),
    #[error("URL '{0}' has no host (expected e.g. http://127.0.0.1:8080/)")]
    NoHost(String),
    #[error("connections must be at least 1")]
    ZeroConnections,
    #[error("streams per connection must be at least 1")]
    ZeroStreams,
    #[error("timeout must be above 0")]
    ZeroTimeout,
    #[error("rate: {0}")]
    Rate(#[from] ProfileError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsConfigError),
    #[error("TLS options (--cacert, --cert, --key, --insecure) need an https:// URL")]
    TlsOnPlainHttp,
    #[error("cannot resolve '{host}': {detail}")]
    Resolve { host: String, detail: String },
}

impl ConfigError {
    /// True when the error is about what the user asked for (as opposed to the
    /// network, like a name that does not resolve).
    pub fn is_usage(&self) -> bool {
        !matches!(self, ConfigError::Resolve { .. })
    }
}

/// Stops a run early: no new requests are sent, in-flight requests finish (bounded by
/// their timeout), and the partial result is returned marked interrupted.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<StopInner>);

#[derive(Debug, Default)]
struct StopInner {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop. Idempotent.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// True once [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    async fn stopped(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// A progress snapshot of one target, delivered once a second.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetProgress {
    pub elapsed: Duration,
    pub responses: u64,
    pub errors: u64,
    /// Responses per second over the last interval.
    pub rps_last: f64,
    /// Corrected p99 latency so far, µs.
    pub p99_us: u64,
}

/// Called once a second with one snapshot per target.
pub type ProgressFn = Box<dyn FnMut(&[TargetProgress]) + Send>;

/// One finished request, as an [`Observer`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Index of the target in the `targets` passed to [`run`].
    pub target: usize,
    /// When the schedule intended to send it (open loop), else when it was sent.
    pub intended: Instant,
    /// When the response (or the error) arrived.
    pub done: Instant,
    pub outcome: &'a Outcome<'a>,
}

/// Called for every finished request, from the worker that sent it: it must be cheap
/// and must not block (the scenario runner records into a mutex-guarded recorder).
pub type Observer = Arc<dyn Fn(Observed<'_>) + Send + Sync>;

/// How to run: the stop handle, an optional progress callback, and an optional
/// per-request observer.
#[derive(Default)]
pub struct RunOptions {
    pub stop: StopHandle,
    pub progress: Option<ProgressFn>,
    pub observer: Option<Observer>,
    /// Start the clock at this instant once every connection is open (default: as
    /// soon as they are). A start already past begins at once.
    pub start_at: Option<Instant>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("stop", &self.stop)
            .field("progress", &self.progress.is_some())
            .field("observer", &self.observer.is_some())
            .field("start_at", &self.start_at)
            .finish()
    }
}

/// What happened to one target. Convert it to the result schema with
/// [`TargetReport::to_result`](crate::report).
#[derive(Debug, Clone)]
pub struct TargetReport {
    pub config: TargetConfig,
    pub stats: Stats,
    pub timeseries: Vec<SecondSample>,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// When the schedule (or closed loop) started.
    pub start: Instant,
    pub interrupted: bool,
    /// Requests the schedule handed out (open loop) or workers started (closed loop).
    pub issued: u64,
    /// Open loop: requests scheduled within the duration that could not be sent before
    /// it ended (every connection was busy), or were still queued when it was stopped.
    pub unsent: u64,
    /// Requests sent again because the idle connection they went out on had been
    /// closed by the server before answering.
    pub stale_retries: u64,
    /// Intended offset of the last scheduled request (open loop).
    pub last_intended_offset: Option<Duration>,
    /// CPU time of the pacer thread.
    pub scheduler_cpu: Duration,
}

/// A ticket: the intended send time of one request.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    intended: Instant,
}

/// Runs every target at once and returns one report per target, in order.
///
/// Must be called within a tokio runtime (multi-threaded for throughput). Connections
/// are opened before the clock starts, so the first requests do not pay for handshakes.
pub async fn run(
    targets: Vec<TargetConfig>,
    mut options: RunOptions,
) -> Result<Vec<TargetReport>, ConfigError> {
    let mut prepared = Vec::with_capacity(targets.len());
    for t in targets {
        prepared.push(prepare(t).await?);
    }
    let stop = options.stop.clone();
    let started_at = SystemTime::now();
    let threads = tokio::runtime::Handle::current().metrics().num_workers();

    // Spawn workers; they connect, report ready, then wait for the start signal.
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let total_workers: usize = prepared.iter().map(|p| p.workers).sum();
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(total_workers.max(1));
    let mut runs = Vec::new();
    let mut workers = tokio::task::JoinSet::new();
    for p in prepared {
        let shard_count = p.workers.clamp(1, (threads * 2).max(2));
        let shards: Vec<_> = (0..shard_count)
            .map(|_| Arc::new(Mutex::new(Stats::new())))
            .collect();
        let (tx, rx) = if p.config.rate.is_closed_loop() {
            (None, None)
        } else {
            let (tx, rx) = async_channel::bounded::<Ticket>(p.workers);
            (Some(tx), Some(rx))
        };
        let run = Arc::new(TargetRun {
            endpoint: p.endpoint,
            slots: (0..p.config.connections)
                .map(|_| Arc::new(H2Slot::default()))
                .collect(),
            streams: p.config.streams() as usize,
            shards,
            timeout: p.config.timeout,
            stop: stop.clone(),
            issued: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            stale_retries: AtomicU64::new(0),
            max_requests: p.config.max_requests,
            duration: p.config.duration,
            closed_loop: p.config.rate.is_closed_loop(),
            index: runs.len(),
            observer: options.observer.clone(),
        });
        for idx in 0..p.workers {
            workers.spawn(worker(
                run.clone(),
                idx,
                rx.clone(),
                start_rx.clone(),
                ready_tx.clone(),
            ));
        }
        runs.push((p.config, run, tx, rx));
    }
    drop(ready_tx);
    for _ in 0..total_workers {
        tokio::select! {
            r = ready_rx.recv() => if r.is_none() { break },
            _ = stop.stopped() => break,
        }
    }

    // Connected: start now, or at the instant asked for (a scenario's timeline).
    if let Some(at) = options.start_at {
        tokio::select! {
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
            () = stop.stopped() => {}
        }
    }
    let start = Instant::now();
    let _ = start_tx.send(Some(start));

    // Pacers: one OS thread per open-loop target.
    let mut pacers = Vec::new();
    for (config, run, tx, _) in &mut runs {
        let Some(tx) = tx.take() else {
            pacers.push(None);
            continue;
        };
        let schedule = Schedule::new(config.rate.clone());
        let limits = (config.duration, config.max_requests);
        let stop = stop.clone();
        let run = run.clone();
        let handle = std::thread::Builder::new()
            .name("meshrig-pacer".into())
            .spawn(move || pace(schedule, start, limits, tx, stop, &run))
            .expect("spawn pacer thread");
        pacers.push(Some(handle));
    }

    // On stop, close the ticket queues so blocked pacers and idle workers return.
    let queues: Vec<_> = runs.iter().filter_map(|r| r.3.clone()).collect();
    let closer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            stop.stopped().await;
            for q in queues {
                q.close();
            }
        })
    };

    // Collect once a second until every worker is done.
    let mut collectors: Vec<Collector> = runs.iter().map(|_| Collector::new(start)).collect();
    let mut ticker = tokio::time::interval_at(
        TokioInstant::from_std(start + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            joined = workers.join_next() => {
                if joined.is_none() { break; }
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                let snapshots: Vec<_> = runs
                    .iter()
                    .zip(collectors.iter_mut())
                    .map(|((_, run, _, _), c)| c.tick(&run.shards, now, false))
                    .collect();
                if let Some(progress) = options.progress.as_mut() {
                    progress(&snapshots);
                }
            }
        }
    }
    closer.abort();
    let interrupted = stop.is_stopped();

    let mut reports = Vec::with_capacity(runs.len());
    for (((config, run, _, queue_rx), mut collector), pacer) in
        runs.into_iter().zip(collectors).zip(pacers)
    {
        let (scheduler_cpu, last_intended_offset) = match pacer {
            Some(handle) => {
                let report = tokio::task::spawn_blocking(move || handle.join())
                    .await
                    .expect("join pacer")
                    .unwrap_or_default();
                (report.cpu, report.last_offset)
            }
            None => (Duration::ZERO, None),
        };
        // Tickets still queued when the run was stopped were scheduled but not sent.
        if let Some(queue) = queue_rx {
            while queue.try_recv().is_ok() {
                run.unsent.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut stats = Stats::new();
        for shard in &run.shards {
            stats.merge(&shard.lock().expect("stats shard"));
        }
        let end = stats.last_done.unwrap_or_else(Instant::now);
        collector.tick(&run.shards, end, true);
        reports.push(TargetReport {
            config,
            stats,
            timeseries: collector.rows,
            started_at,
            start,
            interrupted,
            issued: run.issued.load(Ordering::Relaxed),
            unsent: run.unsent.load(Ordering::Relaxed),
            stale_retries: run.stale_retries.load(Ordering::Relaxed),
            last_intended_offset,
            scheduler_cpu,
        });
    }
    Ok(reports)
}

/// A target with its address resolved and TLS configured.
struct Prepared {
    config: TargetConfig,
    endpoint: Arc<Endpoint>,
    workers: usize,
}

async fn prepare(config: TargetConfig) -> Result<Prepared, ConfigError> {
    config.rate.validate()?;
    if config.connections == 0 {
        return Err(ConfigError::ZeroConnections);
    }
    if config.streams_per_connection == 0 {
        return Err(ConfigError::ZeroStreams);
    }
    if config.timeout.is_zero() {
        return Err(ConfigError::ZeroTimeout);
    }
    let url = config.url.clone();
    let https = match url.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        other => return Err(ConfigError::Scheme(other.unwrap_or("").to_owned())),
    };
    let host = url
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ConfigError::NoHost(url.to_string()))?
        .to_owned();
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<_> = tokio::net::lookup_host((bare_host.as_str(), port))
        .await
        .map_err(|e| ConfigError::Resolve {
            host: host.clone(),
            detail: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ConfigError::Resolve {
            host,
            detail: "no addresses".into(),
        });
    }

    let tls_given = config.tls.ca_file.is_some()
        || config.tls.cert_file.is_some()
        || config.tls.key_file.is_some()
        || config.tls.insecure;
    let tls = if https {
        let alpn = match config.version {
            HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
            HttpVersion::Http2 => vec![b"h2".to_vec()],
        };
        let client = client_config(&config.tls, alpn)?;
        let name = rustls_pki_types::ServerName::try_from(bare_host.clone()).map_err(|_| {
            ConfigError::NoHost(format!("{url} (host is not a valid TLS server name)"))
        })?;
        Some((TlsConnector::from(client), name))
    } else if tls_given {
        return Err(ConfigError::TlsOnPlainHttp);
    } else {
        None
    };

    let mut headers = config.headers.clone();
    if !headers.contains_key(USER_AGENT) {
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("meshrig/", env!("CARGO_PKG_VERSION"))),
        );
    }
    let h1_request = {
        let mut h1_headers = headers.clone();
        if !h1_headers.contains_key(HOST)
            && let Some(auth) = url.authority()
        {
            let value = HeaderValue::from_str(auth.as_str())
                .map_err(|_| ConfigError::NoHost(url.to_string()))?;
            h1_headers.insert(HOST, value);
        }
        Bytes::from(crate::h1::request_bytes(
            &config.method,
            &url,
            &h1_headers,
            &config.body,
        ))
    };
    let request_bytes = match config.version {
        HttpVersion::Http1 => h1_request.len() as u64,
        HttpVersion::Http2 => request_size(&config.method, &url, &headers, config.body.len()),
    };
    let endpoint = Endpoint {
        addrs,
        tls,
        version: config.version,
        method: config.method.clone(),
        uri: url.clone(),
        headers,
        body: config.body.clone(),
        h1_request,
        group_by: config.group_by_header.clone(),
        request_bytes,
    };
    let workers = config.concurrency() as usize;
    Ok(Prepared {
        config,
        endpoint: Arc::new(endpoint),
        workers,
    })
}

/// Shared state of one running target.
struct TargetRun {
    endpoint: Arc<Endpoint>,
    slots: Vec<Arc<H2Slot>>,
    streams: usize,
    shards: Vec<Arc<Mutex<Stats>>>,
    timeout: Duration,
    stop: StopHandle,
    issued: AtomicU64,
    /// Open loop: requests scheduled before the end of the duration that could not be
    /// sent before it ended (or were still queued when the run was stopped).
    unsent: AtomicU64,
    /// Requests sent again on a fresh connection because the idle one they were sent on
    /// had been closed by the server before answering.
    stale_retries: AtomicU64,
    max_requests: Option<u64>,
    duration: Option<Duration>,
    closed_loop: bool,
    /// This target's index, for the observer.
    index: usize,
    observer: Option<Observer>,
}

impl TargetRun {
    /// Closed loop: claims the right to send one more request.
    fn claim(&self, start: Instant) -> bool {
        if self.stop.is_stopped() {
            return false;
        }
        if self.duration.is_some_and(|d| start.elapsed() >= d) {
            return false;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.max_requests.is_some_and(|max| n >= max) {
            self.issued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// A worker's connection: its own HTTP/1.1 connection, or a share of an HTTP/2 one.
enum Conn {
    H1(Option<Sender>),
    H2 {
        slot: Arc<H2Slot>,
        current: Option<(u64, Sender)>,
    },
}

impl Conn {
    async fn ensure(
        &mut self,
        endpoint: &Endpoint,
        deadline: TokioInstant,
    ) -> Result<&mut Sender, ErrorKind> {
        match self {
            Conn::H1(current) => {
                if current.as_ref().is_none_or(Sender::is_closed) {
                    *current = None;
                    *current = Some(endpoint.connect(deadline).await?);
                }
                Ok(current.as_mut().expect("connected above"))
            }
            Conn::H2 { slot, current } => {
                if current.as_ref().is_none_or(|(_, s)| s.is_closed()) {
                    *current = Some(slot.get(endpoint, deadline).await?);
                }
                Ok(&mut current.as_mut().expect("connected above").1)
            }
        }
    }

    /// Forgets a connection after a failed exchange. An HTTP/1.1 connection is dropped.
    /// An HTTP/2 connection is shared by other streams, so a stream-level error (a
    /// reset stream, a timeout) keeps it; only a connection that is closed is replaced.
    async fn drop_connection(&mut self) {
        match self {
            Conn::H1(current) => *current = None,
            Conn::H2 { slot, current } => {
                if current.as_ref().is_some_and(|(_, s)| s.is_closed())
                    && let Some((generation, _)) = current.take()
                {
                    slot.invalidate(generation).await;
                }
            }
        }
    }

    /// Marks a warmed-up HTTP/1.1 connection as idle (see `H1Conn::mark_warm`).
    fn mark_warm(&mut self) {
        if let Conn::H1(Some(Sender::H1(conn))) = self {
            conn.mark_warm();
        }
    }
}

async fn worker(
    run: Arc<TargetRun>,
    idx: usize,
    tickets: Option<async_channel::Receiver<Ticket>>,
    mut start_rx: watch::Receiver<Option<Instant>>,
    ready: mpsc::Sender<()>,
) {
    let shard = run.shards[idx % run.shards.len()].clone();
    let mut conn = match run.endpoint.version {
        HttpVersion::Http1 => Conn::H1(None),
        HttpVersion::Http2 => Conn::H2 {
            slot: run.slots[idx / run.streams].clone(),
            current: None,
        },
    };
    // Warm the connection before the clock starts; a failure here is retried (and
    // counted) on the first request.
    let warm_deadline = TokioInstant::now() + run.timeout;
    let _ = conn.ensure(&run.endpoint, warm_deadline).await;
    conn.mark_warm();
    let _ = ready.send(()).await;
    drop(ready);
    let start = match start_rx.wait_for(Option::is_some).await {
        Ok(s) => s.expect("waited for Some"),
        Err(_) => return,
    };

    let mut backoff = Duration::from_millis(1);
    loop {
        let intended = match &tickets {
            Some(rx) => match rx.recv().await {
                Ok(t) => Some(t.intended),
                Err(_) => break,
            },
            None => {
                if !run.claim(start) {
                    break;
                }
                None
            }
        };
        if run.stop.is_stopped() {
            if intended.is_some() {
                // Received but never sent: accounted for, not lost.
                run.unsent.fetch_add(1, Ordering::Relaxed);
            }
            break;
        }
        let actual = Instant::now();
        if intended.is_some() && run.duration.is_some_and(|d| actual >= start + d + grace(d)) {
            // The run is over: a ticket still queued is counted, not sent.
            run.unsent.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let intended = intended.unwrap_or(actual);
        let deadline = TokioInstant::from_std(actual + run.timeout);
        let outcome = send_one(&run, &mut conn, deadline).await;
        let done = Instant::now();
        let failed_to_connect = matches!(
            outcome,
            OwnedOutcome::Error(ErrorKind::ConnectRefused | ErrorKind::ConnectTimeout)
        );
        let outcome = outcome.as_outcome();
        shard.lock().expect("stats shard").record(
            intended,
            actual,
            done,
            run.endpoint.request_bytes,
            &outcome,
        );
        if let Some(observe) = &run.observer {
            observe(Observed {
                target: run.index,
                intended,
                done,
                outcome: &outcome,
            });
        }
        // Closed loop only: back off after a failed connect so a dead target is not
        // hammered with millions of SYNs. Open loop keeps its schedule regardless.
        if run.closed_loop && failed_to_connect {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        } else {
            backoff = Duration::from_millis(1);
        }
    }
}

/// One request on `conn`, reconnecting once if the idle connection turns out to have
/// been closed by the server before it answered (idempotent requests only; counted).
async fn send_one(run: &TargetRun, conn: &mut Conn, deadline: TokioInstant) -> OwnedOutcome {
    let endpoint = &run.endpoint;
    for attempt in 0..2 {
        let sender = match conn.ensure(endpoint, deadline).await {
            Ok(s) => s,
            Err(kind) => return OwnedOutcome::Error(kind),
        };
        let exchange = endpoint.exchange(sender, deadline).await;
        if !exchange.reusable {
            conn.drop_connection().await;
        }
        if exchange.stale && attempt == 0 {
            run.stale_retries.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        return exchange.outcome;
    }
    unreachable!("the loop returns on its second attempt")
}

/// How long after the end of the duration a late request may still be sent: 1% of
/// the duration, at least 1 ms (the same allowance `schedule.target_met` gives).
pub(crate) fn grace(duration: Duration) -> Duration {
    (duration / 100).max(Duration::from_millis(1))
}

/// What a pacer thread reports when it ends.
#[derive(Debug, Default)]
struct PacerReport {
    cpu: Duration,
    last_offset: Option<Duration>,
}

/// The pacer: hands out tickets at their intended times until the schedule, the
/// duration or the count ends, or the run is stopped. When it is so far behind that
/// the duration is over, the requests still owed are counted as unsent, not sent late.
fn pace(
    mut schedule: Schedule,
    start: Instant,
    (duration, max_requests): (Option<Duration>, Option<u64>),
    tx: async_channel::Sender<Ticket>,
    stop: StopHandle,
    run: &TargetRun,
) -> PacerReport {
    let mut timer = PreciseTimer::new();
    let mut last_offset = None;
    let end = duration.map(|d| start + d + grace(d));
    let mut sent = 0u64;
    while let Some(offset) = schedule.next_offset() {
        if duration.is_some_and(|d| offset >= d) {
            break;
        }
        if max_requests.is_some_and(|n| schedule.next_index() > n) {
            break;
        }
        if let (Some(end), Some(d)) = (end, duration)
            && Instant::now() >= end
        {
            // The duration is over and requests are still owed: count them from the
            // schedule (no stepping through what could be billions of tickets).
            let scheduled = schedule
                .count_before(d)
                .min(max_requests.unwrap_or(u64::MAX));
            run.unsent
                .fetch_add(scheduled.saturating_sub(sent), Ordering::Relaxed);
            break;
        }
        let intended = start + offset;
        if !timer.wait_until(intended, || stop.is_stopped()) {
            break;
        }
        if tx.send_blocking(Ticket { intended }).is_err() {
            break;
        }
        sent += 1;
        run.issued.fetch_add(1, Ordering::Relaxed);
        last_offset = Some(offset);
    }
    PacerReport {
        cpu: crate::sys::thread_cpu_time(),
        last_offset,
    }
}

/// Builds the per-second time series from the shards' interval counters.
struct Collector {
    start: Instant,
    last: Instant,
    second: u64,
    so_far: Recorder,
    responses: u64,
    errors: u64,
    rows: Vec<SecondSample>,
    scratch: Interval,
}

impl Collector {
    fn new(start: Instant) -> Self {
        Self {
            start,
            last: start,
            second: 0,
            so_far: Recorder::latency(),
            responses: 0,
            errors: 0,
            rows: Vec::new(),
            scratch: Interval::new(),
        }
    }

    fn tick(&mut self, shards: &[Arc<Mutex<Stats>>], now: Instant, last: bool) -> TargetProgress {
        for shard in shards {
            shard
                .lock()
                .expect("stats shard")
                .take_interval(&mut self.scratch);
        }
        let length = now.saturating_duration_since(self.last).as_secs_f64();
        let s = &mut self.scratch;
        let rps = if length > 0.0 {
            s.responses as f64 / length
        } else {
            0.0
        };
        if !last || s.responses + s.errors > 0 {
            self.rows.push(SecondSample {
                t_s: self.second,
                rps: (rps * 10.0).round() / 10.0,
                responses: s.responses,
                errors: s.errors,
                p50_us: s.latency.value_at_percentile(50.0),
                p99_us: s.latency.value_at_percentile(99.0),
            });
        }
        self.so_far
            .merge(&s.latency)
            .expect("latency recorders share one range");
        self.responses += s.responses;
        self.errors += s.errors;
        s.latency.reset();
        s.responses = 0;
        s.errors = 0;
        self.second += 1;
        self.last = now;
        TargetProgress {
            elapsed: now.saturating_duration_since(self.start),
            responses: self.responses,
            errors: self.errors,
            rps_last: rps,
            p99_us: self.so_far.value_at_percentile(99.0),
        }
    }
}
