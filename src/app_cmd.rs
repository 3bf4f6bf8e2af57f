//! `meshrig app` — a scenario's application model, made real.
//!
//! One instance of one service version of a scenario file: it reads the scenario,
//! takes the version's `app` (service time, error rate and status, response size,
//! fan-out calls) and serves HTTP/1.1 with it. Service time is a wait on a FIFO
//! semaphore with the service's `cores` permits, so a saturated instance queues as the
//! simulator's k-core CPU queue does, without burning the host's CPU. Calls go out one
//! after another — through the instance's own outbound sidecar (`--outbound`, the
//! `Host` header naming the service) or, with no mesh, straight to the instances
//! (`--direct SERVICE=ADDR,ADDR`, round robin) — and a failed call fails the request
//! with the app's error status, as in the simulator.
//!
//! Every served request and every call is appended to `--log` as a JSON line (times
//! in Unix nanoseconds, so the `meshrig run --mode real` runner can place them on the
//! run's timeline); the file is flushed every 100 ms and at exit.
//!
//! Faults: `POST /_meshrig/fault/K` applies the scenario's fault number K (an `app`
//! fault: error rate and/or service time) to this instance, `DELETE` reverts it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use scenario::FaultKind;
use sim::dist::Dist;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::exit::usage;
use crate::signals::stop_signal;

/// Headers the app sets and reads.
pub mod headers {
    /// On calls: the calling service (`client` for the load generator).
    pub const CALLER: &str = "x-meshrig-caller";
    /// On responses: which service, version and instance answered.
    pub const SERVICE: &str = "x-meshrig-service";
    pub const VERSION: &str = "x-meshrig-version";
    pub const INSTANCE: &str = "x-meshrig-instance";
    /// Trace headers copied from a request onto the calls it makes.
    pub const PROPAGATED: [&str; 8] = [
        "x-request-id",
        "traceparent",
        "tracestate",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "b3",
    ];
}

/// Serve one instance of a scenario's application (service time, errors, response
/// size, fan-out calls) on real sockets.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    meshrig app --scenario scenarios/baseline.yaml --service backend --listen 127.0.0.1:9080\n  \
    meshrig app --scenario s.yaml --service frontend --service-version v1 --listen 127.0.0.1:9080 \\\n    \
      --outbound 127.0.0.1:15001 --log frontend.jsonl")]
pub struct AppArgs {
    /// The scenario file whose application model to serve.
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,

    /// The service (a `spec.topology.services[].name`).
    #[arg(long, value_name = "NAME")]
    service: String,

    /// The service version (default: the service's first).
    #[arg(long, value_name = "NAME")]
    service_version: Option<String>,

    /// This instance's name, in the `x-meshrig-instance` response header.
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,

    /// Where to listen (IP:PORT; port 0 picks one).
    #[arg(long, value_name = "IP:PORT")]
    listen: SocketAddr,

    /// The instance's outbound sidecar: calls go there with `Host: <service>`.
    #[arg(long, value_name = "IP:PORT", conflicts_with = "direct")]
    outbound: Option<SocketAddr>,

    /// No sidecar: the instances of a called service, `SERVICE=IP:PORT[,IP:PORT...]`
    /// (repeatable), used round robin.
    #[arg(long, value_name = "SERVICE=ADDRS")]
    direct: Vec<String>,

    /// Append one JSON line per served request and per call to FILE (created if
    /// missing).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,

    /// Seed of the service-time and error draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Exit when stdin reaches end of file (a parent that dies closes it).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

/// The behaviour that faults may change.
#[derive(Debug, Clone)]
struct Behaviour {
    service_time: Dist,
    error_rate: f64,
}

/// What an app fault changes: the error rate and/or the service time.
type Change = (Option<f64>, Option<Dist>);

/// Everything a request handler needs.
#[derive(Debug)]
struct App {
    service: String,
    version: String,
    instance: String,
    base: Behaviour,
    /// Applied faults by index, in the order applied; the last one wins per field.
    faults: Mutex<Vec<(usize, Change)>>,
    fault_specs: BTreeMap<usize, Change>,
    error_status: u16,
    body: Bytes,
    calls: Vec<scenario::Call>,
    cores: Semaphore,
    rng: Mutex<SmallRng>,
    outbound: Option<String>,
    direct: BTreeMap<String, (Vec<String>, AtomicUsize)>,
    /// Idle upstream connections per address.
    idle: Mutex<BTreeMap<String, Vec<SendRequest<Empty<Bytes>>>>>,
    log: Option<Mutex<Vec<u8>>>,
}

/// Runs `meshrig app`.
pub fn run(args: AppArgs) -> anyhow::Result<ExitCode> {
    let app = Arc::new(build(&args)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(app, &args))
}

fn build(args: &AppArgs) -> anyhow::Result<App> {
    let file = args.scenario.display().to_string();
    let text = std::fs::read_to_string(&args.scenario)
        .map_err(|e| usage(format!("cannot read scenario {file}: {e}")))?;
    let dir = args
        .scenario
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut read = |rel: &str| std::fs::read_to_string(dir.join(rel)).map_err(|e| e.to_string());
    let loaded = scenario::load(&file, &text, &mut read).map_err(|findings| {
        let first = findings
            .iter()
            .find(|f| f.is_error())
            .map(ToString::to_string)
            .unwrap_or_default();
        usage(format!(
            "{file} is not a valid scenario (run `meshrig validate {file}`): {first}"
        ))
    })?;
    let sc = &loaded.scenario;
    let service = sc.service(&args.service).ok_or_else(|| {
        let names: Vec<_> = sc
            .topology
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        usage(format!(
            "--service: {file} has no service '{}' (it has: {})",
            args.service,
            names.join(", ")
        ))
    })?;
    let version = match &args.service_version {
        Some(v) => service.version(v).ok_or_else(|| {
            let names: Vec<_> = service.versions.iter().map(|v| v.name.as_str()).collect();
            usage(format!(
                "--service-version: service '{}' has no version '{v}' (it has: {})",
                service.name,
                names.join(", ")
            ))
        })?,
        None => &service.versions[0],
    };
    let mut direct = BTreeMap::new();
    for d in &args.direct {
        let (svc, addrs) = d.split_once('=').ok_or_else(|| {
            usage(format!(
                "--direct '{d}': expected SERVICE=IP:PORT[,IP:PORT...]"
            ))
        })?;
        let addrs: Vec<String> = addrs.split(',').map(str::to_owned).collect();
        for a in &addrs {
            if a.parse::<SocketAddr>().is_err() {
                return Err(usage(format!(
                    "--direct '{d}': '{a}' is not IP:PORT (e.g. 127.0.0.1:9080)"
                )));
            }
        }
        direct.insert(svc.to_owned(), (addrs, AtomicUsize::new(0)));
    }
    let app = &version.app;
    for call in &app.calls {
        if args.outbound.is_none() && !direct.contains_key(&call.service) {
            return Err(usage(format!(
                "{}:{} calls '{}': give --outbound (its sidecar) or --direct {}=IP:PORT",
                service.name, version.name, call.service, call.service
            )));
        }
    }
    // The app faults that select this instance's service and version.
    let mut fault_specs = BTreeMap::new();
    for (i, f) in sc.faults.iter().enumerate() {
        if let FaultKind::App {
            selector,
            error_rate,
            service_time,
        } = &f.kind
            && selector.service == service.name
            && selector.version.as_ref().is_none_or(|v| *v == version.name)
        {
            fault_specs.insert(
                i,
                (*error_rate, service_time.as_ref().map(Dist::from_scenario)),
            );
        }
    }
    let log = match &args.log {
        Some(path) => {
            // Appended to: an instance restarted by a fault keeps what it logged
            // before it was killed.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| usage(format!("--log {}: {e}", path.display())))?;
            Some(Mutex::new(Vec::with_capacity(64 * 1024)))
        }
        None => None,
    };
    Ok(App {
        service: service.name.clone(),
        version: version.name.clone(),
        instance: args
            .instance
            .clone()
            .unwrap_or_else(|| format!("{}-{}", service.name, version.name)),
        base: Behaviour {
            service_time: Dist::from_scenario(&app.service_time),
            error_rate: app.error_rate,
        },
        faults: Mutex::new(Vec::new()),
        fault_specs,
        error_status: app.error_status,
        body: Bytes::from(vec![b'x'; usize::try_from(app.response_bytes).unwrap_or(0)]),
        calls: app.calls.clone(),
        cores: Semaphore::new(service.cores as usize),
        rng: Mutex::new(SmallRng::seed_from_u64(args.seed)),
        outbound: args.outbound.map(|a| a.to_string()),
        direct,
        idle: Mutex::new(BTreeMap::new()),
        log,
    })
}

async fn serve(app: Arc<App>, args: &AppArgs) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| usage(format!("--listen {}: cannot listen: {e}", args.listen)))?;
    let local = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "app listening on {local}")?;
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let stop = stop_signal()?;
    let eof = stdin_eof(args.exit_on_stdin_eof);
    let flusher = args.log.clone().map(|path| {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                flush(&app, &path);
            }
        })
    });
    let accept = {
        let app = app.clone();
        async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let app = app.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(handle(app, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        }
    };
    tokio::select! {
        () = accept => {}
        _ = stop => {}
        () = eof => {}
    }
    if let Some(f) = flusher {
        f.abort();
    }
    if let Some(path) = &args.log {
        flush(&app, path);
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves when stdin reaches EOF (never, unless `enabled`).
pub async fn stdin_eof(enabled: bool) {
    if !enabled {
        return std::future::pending().await;
    }
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while let Ok(n) = std::io::Read::read(&mut stdin, &mut sink) {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

fn flush(app: &App, path: &Path) {
    let Some(log) = &app.log else { return };
    let bytes = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    if bytes.is_empty() {
        return;
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
        let _ = f.write_all(&bytes);
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl App {
    fn behaviour(&self) -> Behaviour {
        let mut b = self.base.clone();
        for (_, (error_rate, service_time)) in
            self.faults.lock().unwrap_or_else(|e| e.into_inner()).iter()
        {
            if let Some(r) = error_rate {
                b.error_rate = *r;
            }
            if let Some(d) = service_time {
                b.service_time = d.clone();
            }
        }
        b
    }

    /// Sends on an idle connection to `address`, or a new one.
    async fn send(
        &self,
        address: &str,
        request: Request<Empty<Bytes>>,
    ) -> Result<(Response<Incoming>, SendRequest<Empty<Bytes>>), String> {
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle.entry(address.to_owned()).or_default();
            loop {
                match list.pop() {
                    Some(s) if s.is_ready() => break Some(s),
                    Some(_) => continue,
                    None => break None,
                }
            }
        };
        let mut sender = match idle {
            Some(s) => s,
            None => {
                let tcp = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(|e| format!("connect {address}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| format!("connect {address}: {e}"))?;
                tokio::spawn(conn);
                sender
            }
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok((response, sender))
    }

    /// Returns a connection whose response was read in full to the idle list.
    fn put_idle(&self, address: &str, sender: SendRequest<Empty<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(address.to_owned()).or_default();
        if list.len() < 64 {
            list.push(sender);
        }
    }

    fn record(&self, line: &serde_json::Value) {
        if let Some(log) = &self.log {
            let mut buf = log.lock().unwrap_or_else(|e| e.into_inner());
            if serde_json::to_writer(&mut *buf, line).is_ok() {
                buf.push(b'\n');
            }
        }
    }
}

async fn handle(app: Arc<App>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(rest) = request.uri().path().strip_prefix("/_meshrig/fault/") {
        return fault(&app, rest, request.method());
    }
    let start = unix_ns();
    let caller = request
        .headers()
        .get(headers::CALLER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    let propagated: Vec<(&'static str, HeaderValue)> = headers::PROPAGATED
        .iter()
        .filter_map(|h| request.headers().get(*h).map(|v| (*h, v.clone())))
        .collect();
    // Drain the request body (the model has no use for it).
    let _ = request.into_body().collect().await;

    let behaviour = app.behaviour();
    let (work_ns, error_roll) = {
        let mut rng = app.rng.lock().unwrap_or_else(|e| e.into_inner());
        (
            behaviour.service_time.sample(&mut *rng),
            rng.random::<f64>(),
        )
    };
    {
        // A core for the duration of the work: FIFO, so a busy instance queues.
        let _core = app.cores.acquire().await;
        tokio::time::sleep(Duration::from_nanos(work_ns)).await;
    }
    let mut failed = false;
    for call in &app.calls {
        failed |= !make_call(&app, call, &propagated).await;
    }
    let error = failed || (behaviour.error_rate > 0.0 && error_roll < behaviour.error_rate);
    let status = if error { app.error_status } else { 200 };
    app.record(&serde_json::json!({
        "k": "serve", "start_ns": start, "dur_ns": unix_ns().saturating_sub(start),
        "status": status, "caller": caller,
    }));
    let mut response = Response::new(Full::new(app.body.clone()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    for (name, value) in [
        (headers::SERVICE, &app.service),
        (headers::VERSION, &app.version),
        (headers::INSTANCE, &app.instance),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    response
}

/// One fan-out call; true when it got a response below 500 (the simulator fails the
/// task on a 5xx, a reset or a connect failure).
async fn make_call(
    app: &App,
    call: &scenario::Call,
    propagated: &[(&'static str, HeaderValue)],
) -> bool {
    let start = unix_ns();
    let (address, host) = match (&app.outbound, app.direct.get(&call.service)) {
        (_, Some((addrs, next))) => {
            let i = next.fetch_add(1, Ordering::Relaxed) % addrs.len();
            (addrs[i].clone(), addrs[i].clone())
        }
        (Some(outbound), None) => (outbound.clone(), call.service.clone()),
        (None, None) => return false,
    };
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(call.path.as_str())
        .header(http::header::HOST, host)
        .header(headers::CALLER, app.service.as_str());
    for (k, v) in &call.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    for (k, v) in propagated {
        builder = builder.header(*k, v.clone());
    }
    let Ok(request) = builder.body(Empty::new()) else {
        return false;
    };
    let outcome = match app.send(&address, request).await {
        Ok((response, sender)) => {
            let status = response.status().as_u16();
            let attempts = response
                .headers()
                .get("x-meshrig-attempts")
                .and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
            let version = response
                .headers()
                .get(headers::VERSION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match response.into_body().collect().await {
                Ok(_) => {
                    app.put_idle(&address, sender);
                    Ok((status, attempts, version))
                }
                Err(e) => Err(format!("reset: {e}")),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    let dur = unix_ns().saturating_sub(start);
    match outcome {
        Ok((status, attempts, version)) => {
            app.record(&serde_json::json!({
                "k": "call", "callee": call.service, "start_ns": start, "dur_ns": dur,
                "status": status, "attempts": attempts, "version": version,
            }));
            status < 500
        }
        Err(e) => {
            let kind = if e.contains("connect") {
                "connect_failure"
            } else {
                "reset"
            };
            app.record(&serde_json::json!({
                "k": "call", "callee": call.service, "start_ns": start, "dur_ns": dur,
                "error": kind,
            }));
            false
        }
    }
}

fn fault(app: &App, rest: &str, method: &Method) -> Response<Full<Bytes>> {
    let Some(index) = rest.parse::<usize>().ok() else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected /_meshrig/fault/<index>\n",
        );
    };
    let Some((error_rate, service_time)) = app.fault_specs.get(&index) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "fault {index} is not an app fault of {}:{}\n",
                app.service, app.version
            ),
        );
    };
    let mut faults = app.faults.lock().unwrap_or_else(|e| e.into_inner());
    faults.retain(|(i, _)| *i != index);
    if method == Method::POST {
        faults.push((index, (*error_rate, service_time.clone())));
        text(StatusCode::OK, "applied\n")
    } else if method == Method::DELETE {
        text(StatusCode::OK, "reverted\n")
    } else {
        text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST applies, DELETE reverts\n",
        )
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}
