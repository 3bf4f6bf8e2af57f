//! `meshrig run --mode real` — the scenario on real processes and real sockets.
//!
//! The runner starts the control plane (`meshrig control`) and, with sidecars on both
//! ends of a hop, the certificate authority (`meshrig ca serve`: every sidecar gets
//! its SPIFFE certificate from it and renews it; the scenario's `mesh.mtls` becomes a
//! mesh-wide PeerAuthentication), then for every instance the application model
//! (`meshrig app`) and its sidecar (`meshrig proxy --control`),
//! one client sidecar per zone the workload comes from, and a fault-injecting TCP
//! relay ([`netfault::Link`]) between a caller's sidecars and an instance wherever the
//! scenario's network latency or a link fault needs one. It drives the workload with
//! the loadgen engine, applies the faults for real on the scenario's timeline (SIGKILL
//! and restart, control plane down, CA down, root rotation, config changes, app
//! faults, link partitions, latency, loss-as-reset, hold/release), then stops everything and builds the
//! result — the same schema as sim mode — from the load generator's observations and
//! the applications' request logs.
//!
//! What only the simulator can do (clock skew, per-core CPU accounting) is listed in the result's `not_applied`, never skipped silently.
//! Latency thresholds depend on the machine: in real mode their verdicts are advisory.

mod collect;
mod faults;
mod identity;
mod plan;
mod procs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use http::{HeaderName, HeaderValue, Uri};
use loadgen::{Observed, RunOptions, StopHandle, TargetConfig};
use results::recorder::RunInfo;
use results::scenario::{Event, ScenarioInfo, ScenarioProvenance, ScenarioResult};
use scenario::{ConfigSource, FaultKind, Load, Loaded, MtlsSetting, RateProfile, Scenario};

use self::collect::{Rec, What};
use self::plan::{Plan, Ports};
use self::procs::{Procs, Spec};

/// How long children get to start and say `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get after the workload ends.
const DRAIN: Duration = Duration::from_millis(500);

/// What `meshrig run` passes to real mode.
#[derive(Debug)]
pub struct RealOptions {
    pub scenario_path: PathBuf,
    pub file: String,
    pub seed: u64,
    /// `--duration`, when shorter than the scenario.
    pub duration_ns: Option<u64>,
    pub command: Vec<String>,
    pub stop: Arc<AtomicBool>,
    /// Where configs, registry, application logs and child stderr go.
    pub work_dir: PathBuf,
    pub quiet: bool,
}

/// Runs the scenario for real and returns its result.
pub fn run(loaded: &Loaded, opts: &RealOptions) -> anyhow::Result<ScenarioResult> {
    let sc = &loaded.scenario;
    let end_ns = opts
        .duration_ns
        .map_or(sc.duration_ns, |d| d.min(sc.duration_ns));
    // A previous run's configs and logs would leak into this one.
    if opts.work_dir.exists() {
        std::fs::remove_dir_all(&opts.work_dir)
            .with_context(|| format!("cannot clear {}", opts.work_dir.display()))?;
    }
    std::fs::create_dir_all(opts.work_dir.join("logs"))
        .with_context(|| format!("cannot create {}", opts.work_dir.display()))?;
    let mut ports = Ports::default();
    let plan = Plan::build(sc, &mut ports).context("cannot reserve local ports")?;
    let (not_applied, mut warnings) = unsupported(sc);
    warnings.extend(plan.warnings.iter().cloned());

    let config_dir = opts.work_dir.join("config");
    write_config(loaded, &config_dir)?;
    let ca = identity::CaPlan::new(sc, &plan, &opts.work_dir, opts.seed);
    if ca.is_some()
        && let Some(pa) = identity::mesh_peer_authentication(loaded)
    {
        std::fs::write(config_dir.join("000-mesh-mtls.yaml"), pa)?;
    }
    let registry = opts.work_dir.join("registry.json");
    std::fs::write(
        &registry,
        serde_json::to_vec_pretty(&plan.registry_json(sc))?,
    )?;

    let exe = std::env::current_exe().context("cannot find the meshrig binary")?;
    let mut procs = Procs::new(exe, opts.work_dir.join("logs"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    ports.release();
    let control_url = format!("http://127.0.0.1:{}", plan.control_port);
    if plan.proxies_per_hop > 0 {
        procs.start(control_spec(&plan, &config_dir, &registry), START_TIMEOUT)?;
    }
    if let Some(ca) = &ca {
        procs.start(ca.spec(), START_TIMEOUT)?;
    }
    let links = runtime.block_on(faults::start_links(&plan, opts.seed))?;
    let specs = instance_specs(&plan, opts, &control_url, ca.as_ref());
    procs.start_all(specs, START_TIMEOUT)?;
    if !opts.quiet {
        eprintln!(
            "meshrig run: {} instances, {} client sidecars, {} links up; running {} of load",
            plan.insts.len(),
            plan.clients.len(),
            links.len(),
            results::units::format_duration(Duration::from_nanos(end_ns)),
        );
    }

    // The run's timeline starts once the load generator has had time to open its
    // connections (they are opened before the timeline starts, as `meshrig load` does).
    let setup =
        Duration::from_millis(500) + Duration::from_micros(500) * connections_needed(sc, end_ns);
    let t0 = Instant::now() + setup;
    let t0_unix = unix_ns() + u64::try_from(setup.as_nanos()).unwrap_or(0);
    let procs = Arc::new(Mutex::new(procs));
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let fault_thread = faults::spawn(faults::Context {
        sc: sc.clone(),
        plan: plan.clone(),
        procs: Arc::clone(&procs),
        links: links.iter().map(netfault::Link::handle).collect(),
        ca: ca.clone(),
        events: Arc::clone(&events),
        t0,
        done: Arc::clone(&done),
        stop: Arc::clone(&opts.stop),
        config_dir: config_dir.clone(),
        scenario_dir: opts
            .scenario_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    });

    let client_recs: Arc<Mutex<Vec<Rec>>> = Arc::default();
    let reports = runtime.block_on(drive(sc, &plan, end_ns, t0, opts, &client_recs));
    done.store(true, Ordering::SeqCst);
    let _ = fault_thread.join();
    let elapsed_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let interrupted = opts.stop.load(Ordering::SeqCst);

    // Stop everything; applications flush their logs on the way out.
    {
        let mut p = procs.lock().unwrap_or_else(|e| e.into_inner());
        p.stop_all(Duration::from_secs(3));
    }
    runtime.block_on(async {
        for l in links {
            l.shutdown().await;
        }
    });
    let reports = reports?;
    let mut recs = std::mem::take(&mut *client_recs.lock().unwrap_or_else(|e| e.into_inner()));
    let mut bad_lines = 0;
    for (i, inst) in plan.insts.iter().enumerate() {
        bad_lines += collect::read_app_log(&app_log(opts, &inst.name), i, t0_unix, &mut recs);
    }
    if bad_lines > 0 {
        warnings.push(format!(
            "{bad_lines} application log lines could not be read"
        ));
    }
    let unsent: u64 = reports.iter().map(|r| r.unsent).sum();
    if unsent > 0 {
        warnings.push(format!(
            "{unsent} scheduled requests were never sent: every load-generator connection was busy"
        ));
    }
    let duration_ns = if interrupted {
        elapsed_ns.min(end_ns)
    } else {
        end_ns
    };
    let mut events = std::mem::take(&mut *events.lock().unwrap_or_else(|e| e.into_inner()));
    let counts = proxy_events(&plan, opts, t0_unix, &mut events);
    let collected = collect::collect(sc, &plan, recs, events, duration_ns, &counts);
    Ok(result(
        loaded,
        opts,
        collected,
        duration_ns,
        interrupted,
        not_applied,
        warnings,
    ))
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn access_log(opts: &RealOptions, name: &str) -> PathBuf {
    opts.work_dir
        .join("logs")
        .join(format!("{name}.access.jsonl"))
}

fn app_log(opts: &RealOptions, name: &str) -> PathBuf {
    opts.work_dir.join("logs").join(format!("{name}.app.jsonl"))
}

/// The sidecars' events (JSON lines on their stderr: outlier detection, the
/// certificate lifecycle, refused mTLS handshakes) and the CA's (root rotation) as
/// result events, and per instance the ejections, certificates and expiries.
fn proxy_events(
    plan: &Plan,
    opts: &RealOptions,
    t0_unix: u64,
    events: &mut Vec<Event>,
) -> BTreeMap<String, collect::Counts> {
    // An endpoint address is an instance's serving port, or a link's port to it.
    let mut by_port: BTreeMap<u16, &str> = BTreeMap::new();
    for i in &plan.insts {
        by_port.insert(i.serving_port(plan.proxies_per_hop), &i.name);
    }
    for l in &plan.links {
        by_port.insert(l.port, &plan.insts[l.dest].name);
    }
    let mut counts: BTreeMap<String, collect::Counts> = BTreeMap::new();
    let sidecars = plan
        .insts
        .iter()
        .map(|i| format!("{}.proxy", i.name))
        .chain(plan.clients.iter().map(|c| format!("{}.proxy", c.name)))
        .chain(std::iter::once("ca".to_owned()));
    for proxy in sidecars {
        let path = opts.work_dir.join("logs").join(format!("{proxy}.stderr"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(kind) = v["event"].as_str().map(str::to_owned) else {
                continue;
            };
            let unix = v["unix_ns"]
                .as_u64()
                .or_else(|| v["ts_unix_ms"].as_u64().map(|ms| ms * 1_000_000))
                .unwrap_or(0);
            let address = v["endpoint"].as_str();
            let target = address
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .and_then(|p| by_port.get(&p).copied());
            if kind == "ejection"
                && let Some(t) = target
            {
                counts.entry(t.to_owned()).or_default().ejections += 1;
            }
            let own = proxy.trim_end_matches(".proxy").to_owned();
            match kind.as_str() {
                "cert_issued" => counts.entry(own).or_default().certs_issued += 1,
                "cert_expired" => counts.entry(own).or_default().cert_expiries += 1,
                _ => {}
            }
            // The sidecar names endpoints by address; the result by instance, as the
            // simulator does (the wording is mesh-core's, shared by both).
            let mut detail = v["message"].as_str().unwrap_or("").to_owned();
            if let (Some(a), Some(t)) = (address, target) {
                detail = detail.replace(a, t);
            }
            events.push(Event {
                t_ns: unix.saturating_sub(t0_unix),
                kind,
                at: proxy.trim_end_matches(".proxy").to_owned(),
                detail,
            });
        }
    }
    // Per-request decisions from the sidecars' access logs (outbound side): injected
    // faults and retries, as the simulator logs them.
    let sources = plan
        .insts
        .iter()
        .map(|i| i.name.clone())
        .chain(plan.clients.iter().map(|c| c.name.clone()));
    for source in sources {
        let Ok(text) = std::fs::read_to_string(access_log(opts, &source)) else {
            continue;
        };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["reporter"] != "source" {
                continue;
            }
            let Some(start) = v["start_time"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| u64::try_from(d.as_nanos()).ok())
            else {
                continue;
            };
            if start < t0_unix {
                continue;
            }
            let t_ns = start - t0_unix;
            let flags = v["response_flags"].as_str().unwrap_or("-");
            let dest = v["authority"].as_str().unwrap_or("?");
            for (flag, kind) in [("FI", "fault_abort"), ("DI", "fault_delay")] {
                if flags.split(',').any(|f| f == flag) {
                    events.push(Event {
                        t_ns,
                        kind: kind.to_owned(),
                        at: source.clone(),
                        detail: format!("to {dest}: {}", v["response_code"]),
                    });
                }
            }
            let attempts = v["attempts"].as_u64().unwrap_or(1);
            for k in 1..attempts {
                events.push(Event {
                    t_ns,
                    kind: "retry".to_owned(),
                    at: source.clone(),
                    detail: format!("to {dest}: try {}", k + 1),
                });
            }
        }
    }
    counts
}

/// What real mode cannot reproduce, said up front: (`not_applied`, warnings).
fn unsupported(sc: &Scenario) -> (Vec<String>, Vec<String>) {
    let mut not_applied = Vec::new();
    let mut warnings = Vec::new();
    if sc.mesh.proxies_per_hop == 1 && sc.mesh.mtls != MtlsSetting::Disable {
        warnings.push(
            "proxiesPerHop 1: no callee sidecar terminates mTLS, so no certificates are issued \
             and hops are plaintext (as in the simulator)"
                .to_owned(),
        );
    }
    if sc.mesh.proxies_per_hop == 1 {
        warnings.push(
            "proxiesPerHop 1: only the caller's sidecar is in the path; the callee's inbound \
             policy (authorization) is not enforced"
                .to_owned(),
        );
    }
    for (i, f) in sc.faults.iter().enumerate() {
        let why = match &f.kind {
            FaultKind::ClockSkew { .. } => Some("clock skew exists only in the simulator"),
            FaultKind::CaOutage | FaultKind::CaRotate { .. } if sc.mesh.proxies_per_hop < 2 => {
                Some("no CA runs without sidecars on both ends of a hop (proxiesPerHop 2)")
            }
            _ => None,
        };
        if let Some(why) = why {
            not_applied.push(format!("spec.faults[{i}] (line {}): {why}", f.line));
        }
    }
    for (i, w) in sc.workload.iter().enumerate() {
        if w.new_connection_per_request {
            not_applied.push(format!(
                "spec.workload[{i}].newConnectionPerRequest: the load generator reuses connections"
            ));
        }
        if w.poisson_arrivals {
            warnings.push(format!(
                "spec.workload[{i}].arrivals poisson: real mode sends at evenly spaced times"
            ));
        }
        if let Load::Closed { think_time, .. } = &w.load
            && *think_time != (scenario::Dist::Fixed { ns: 0 })
        {
            not_applied.push(format!(
                "spec.workload[{i}].thinkTime: real-mode closed-loop users send back to back"
            ));
        }
    }
    (not_applied, warnings)
}

/// The Istio sources as files the control plane watches: the scenario's own, in order.
fn write_config(loaded: &Loaded, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, (_, text)) in loaded.config_sources.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:03}-scenario.yaml")), text)?;
    }
    if loaded.config_sources.is_empty() {
        // The directory is watched for config faults; it starts with no resources.
        std::fs::write(
            dir.join("000-scenario.yaml"),
            "# This scenario has no Istio resources.\n",
        )?;
    }
    Ok(())
}

/// The text of a config fault's sources (files relative to the scenario).
pub fn fault_sources(sources: &[ConfigSource], scenario_dir: &Path) -> Vec<String> {
    sources
        .iter()
        .filter_map(|s| match s {
            ConfigSource::Inline { text, .. } => Some(text.clone()),
            ConfigSource::File { path, .. } => {
                std::fs::read_to_string(scenario_dir.join(path)).ok()
            }
        })
        .collect()
}

fn control_spec(plan: &Plan, config_dir: &Path, registry: &Path) -> Spec {
    Spec {
        name: "control".to_owned(),
        args: vec![
            "control".into(),
            "--config".into(),
            config_dir.display().to_string(),
            "--registry".into(),
            registry.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", plan.control_port),
            "--poll-interval".into(),
            "100ms".into(),
            "--exit-on-stdin-eof".into(),
        ],
    }
}

fn sidecar_args(
    control_url: &str,
    service: &str,
    namespace: &str,
    labels: &[(String, String)],
    service_account: &str,
    (zone, region): (&str, &str),
) -> Vec<String> {
    let mut args = vec![
        "proxy".into(),
        "--control".into(),
        control_url.to_owned(),
        "--service".into(),
        service.to_owned(),
        "--namespace".into(),
        namespace.to_owned(),
        "--service-account".into(),
        service_account.to_owned(),
        "--zone".into(),
        zone.to_owned(),
        "--region".into(),
        region.to_owned(),
        "--exit-on-stdin-eof".into(),
    ];
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args
}

/// Every instance's app and sidecar, and the client sidecars.
fn instance_specs(
    plan: &Plan,
    opts: &RealOptions,
    control_url: &str,
    ca: Option<&identity::CaPlan>,
) -> Vec<Spec> {
    let mut specs = Vec::new();
    let addr = |port: u16| format!("127.0.0.1:{port}");
    for (k, inst) in plan.insts.iter().enumerate() {
        let mut args = vec![
            "app".into(),
            "--scenario".into(),
            opts.scenario_path.display().to_string(),
            "--service".into(),
            inst.service.clone(),
            "--service-version".into(),
            inst.version.clone(),
            "--instance".into(),
            inst.name.clone(),
            "--listen".into(),
            addr(inst.app_port),
            "--log".into(),
            app_log(opts, &inst.name).display().to_string(),
            "--seed".into(),
            (opts.seed ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_string(),
            "--exit-on-stdin-eof".into(),
        ];
        if plan.proxies_per_hop > 0 {
            args.push("--outbound".into());
            args.push(addr(inst.outbound_port));
        } else {
            // No mesh: the app calls the instances itself, round robin.
            let mut by_service: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for other in &plan.insts {
                by_service
                    .entry(other.service.as_str())
                    .or_default()
                    .push(addr(other.app_port));
            }
            for (svc, addrs) in by_service {
                args.push("--direct".into());
                args.push(format!("{svc}={}", addrs.join(",")));
            }
        }
        specs.push(Spec {
            name: format!("{}.app", inst.name),
            args,
        });
        if plan.proxies_per_hop > 0 {
            let labels: Vec<(String, String)> = inst.labels.clone().into_iter().collect();
            let mut args = sidecar_args(
                control_url,
                &inst.service,
                &inst.namespace,
                &labels,
                &inst.service_account,
                (&inst.zone, &inst.region),
            );
            args.extend([
                "--outbound".into(),
                addr(inst.outbound_port),
                "--admin".into(),
                addr(inst.admin_port),
                "--access-log".into(),
                access_log(opts, &inst.name).display().to_string(),
            ]);
            if plan.proxies_per_hop >= 2 {
                args.extend([
                    "--inbound".into(),
                    addr(inst.inbound_port),
                    "--app".into(),
                    addr(inst.app_port),
                ]);
            }
            if let Some(ca) = ca {
                args.extend(ca.sidecar_flags(&inst.namespace, &inst.service_account));
            }
            specs.push(Spec {
                name: format!("{}.proxy", inst.name),
                args,
            });
        }
    }
    for c in &plan.clients {
        let labels = vec![("app".to_owned(), "client".to_owned())];
        let mut args = sidecar_args(
            control_url,
            "client",
            "default",
            &labels,
            "client",
            (&c.zone, &c.region),
        );
        args.extend([
            "--outbound".into(),
            addr(c.outbound_port),
            "--admin".into(),
            addr(c.admin_port),
            "--access-log".into(),
            access_log(opts, &c.name).display().to_string(),
        ]);
        if let Some(ca) = ca {
            args.extend(ca.sidecar_flags("default", "client"));
        }
        specs.push(Spec {
            name: format!("{}.proxy", c.name),
            args,
        });
    }
    specs
}

/// The loadgen profile for a scenario workload lasting `span` (sine becomes steps of
/// one second).
fn profile(p: &RateProfile, span: Duration) -> loadgen::RateProfile {
    match p {
        RateProfile::Constant { rps } => loadgen::RateProfile::Constant { rps: *rps },
        RateProfile::Ramp { from_rps, to_rps } => loadgen::RateProfile::Ramp {
            from_rps: *from_rps,
            to_rps: *to_rps,
            over: span.max(Duration::from_millis(1)),
        },
        RateProfile::Steps { steps } => {
            let mut out = Vec::new();
            for (i, (step_at, rps)) in steps.iter().enumerate() {
                if i == 0 && *step_at > 0 {
                    out.push(loadgen::Step {
                        rps: 0.0,
                        hold: Duration::from_nanos(*step_at),
                    });
                }
                let next = steps.get(i + 1).map_or(u64::MAX / 2, |s| s.0);
                out.push(loadgen::Step {
                    rps: *rps,
                    hold: Duration::from_nanos(next.saturating_sub(*step_at)),
                });
            }
            loadgen::RateProfile::Steps(out)
        }
        RateProfile::Sine { .. } => {
            let secs = span.as_secs().max(1);
            let span_ns = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
            loadgen::RateProfile::Steps(
                (0..secs)
                    .map(|s| loadgen::Step {
                        rps: p.rate_at(s * 1_000_000_000 + 500_000_000, span_ns),
                        hold: Duration::from_secs(1),
                    })
                    .collect(),
            )
        }
    }
}

/// How long workload `w` sends, within a run of `end_ns`.
fn span_ns(sc: &Scenario, w: &scenario::Workload, end_ns: u64) -> u64 {
    w.duration_ns
        .unwrap_or(sc.duration_ns.saturating_sub(w.start_ns))
        .min(end_ns.saturating_sub(w.start_ns))
}

/// The loadgen rate profile of workload `w` and the connections it gets.
fn workload_rate(w: &scenario::Workload, span_ns: u64) -> (loadgen::RateProfile, u32) {
    match &w.load {
        Load::Open(p) => {
            let peak = (0..100)
                .map(|k| p.rate_at(span_ns / 100 * k, span_ns))
                .fold(0.0f64, f64::max);
            (
                profile(p, Duration::from_nanos(span_ns)),
                // Enough connections for a second of requests in flight: an open
                // loop must not stall behind slow responses.
                (peak.ceil() as u32).clamp(8, 2_000),
            )
        }
        Load::Closed { users, .. } => (loadgen::RateProfile::Max, (*users).max(1)),
    }
}

/// Connections the load generator opens before the timeline starts.
fn connections_needed(sc: &Scenario, end_ns: u64) -> u32 {
    sc.workload
        .iter()
        .filter(|w| w.start_ns < end_ns)
        .map(|w| workload_rate(w, span_ns(sc, w, end_ns)).1)
        .sum()
}

/// Runs every workload (each from its start time) and records each request.
async fn drive(
    sc: &Scenario,
    plan: &Plan,
    end_ns: u64,
    t0: Instant,
    opts: &RealOptions,
    recs: &Arc<Mutex<Vec<Rec>>>,
) -> anyhow::Result<Vec<loadgen::TargetReport>> {
    let stop = StopHandle::new();
    let watcher = {
        let stop = stop.clone();
        let flag = Arc::clone(&opts.stop);
        tokio::spawn(async move {
            while !flag.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            stop.stop();
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, w) in sc.workload.iter().enumerate() {
        if w.start_ns >= end_ns {
            continue;
        }
        let span_ns = span_ns(sc, w, end_ns);
        let span = Duration::from_nanos(span_ns);
        let (rate, concurrency) = workload_rate(w, span_ns);
        // Where requests go: the client sidecar of the workload's zone, or (no mesh)
        // the target's instances directly, the rate split evenly.
        let urls: Vec<String> = if plan.proxies_per_hop > 0 {
            let c = plan
                .clients
                .iter()
                .find(|c| c.zone == w.from_zone)
                .expect("one client sidecar per workload zone");
            vec![format!("http://127.0.0.1:{}{}", c.outbound_port, w.path)]
        } else {
            plan.insts
                .iter()
                .filter(|i| i.service == w.target)
                .map(|i| format!("http://127.0.0.1:{}{}", i.app_port, w.path))
                .collect()
        };
        let n = urls.len().max(1) as u32;
        let mut targets = Vec::new();
        for url in urls {
            let uri: Uri = url.parse().with_context(|| format!("workload URL {url}"))?;
            let mut t = TargetConfig::new(uri);
            t.method = w.method.parse().unwrap_or(http::Method::GET);
            t.rate = scale(&rate, n);
            t.connections = concurrency.div_ceil(n).max(1);
            t.duration = Some(span);
            t.timeout = Duration::from_nanos(w.timeout_ns.max(1));
            t.body = bytes::Bytes::from(vec![b'x'; usize::try_from(w.request_bytes).unwrap_or(0)]);
            t.group_by_header = Some(HeaderName::from_static("x-meshrig-attempts"));
            if plan.proxies_per_hop > 0 {
                t.headers
                    .insert(http::header::HOST, HeaderValue::from_str(&w.target)?);
            }
            t.headers.insert(
                HeaderName::from_static(crate::app_cmd::headers::CALLER),
                HeaderValue::from_static("client"),
            );
            for (k, v) in &w.headers {
                t.headers.insert(
                    HeaderName::from_bytes(k.as_bytes())?,
                    HeaderValue::from_str(v)?,
                );
            }
            targets.push(t);
        }
        let recs = Arc::clone(recs);
        let target = w.target.clone();
        let observer: loadgen::Observer = Arc::new(move |o: Observed<'_>| {
            let start_ns = o.intended.saturating_duration_since(t0).as_nanos() as u64;
            let at_ns = o.done.saturating_duration_since(t0).as_nanos() as u64;
            let (status, error, attempts) = match o.outcome {
                loadgen::stats::Outcome::Response { status, group, .. } => (
                    Some(*status),
                    None,
                    group.and_then(|g| g.parse::<u32>().ok()).unwrap_or(1),
                ),
                loadgen::stats::Outcome::Error(kind) => (None, Some(kind.as_str().to_owned()), 1),
            };
            recs.lock().unwrap_or_else(|e| e.into_inner()).push(Rec {
                start_ns,
                at_ns: at_ns.max(start_ns),
                status,
                error,
                attempts,
                what: What::Client {
                    w: i,
                    target: target.clone(),
                },
            });
        });
        let stop = stop.clone();
        let start_at = t0 + Duration::from_nanos(w.start_ns);
        tasks.spawn(async move {
            // Connect now; the schedule starts on the scenario's timeline.
            loadgen::run(
                targets,
                RunOptions {
                    stop,
                    progress: None,
                    observer: Some(observer),
                    start_at: Some(start_at),
                },
            )
            .await
        });
    }
    let mut reports = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(mut rs)) => reports.append(&mut rs),
            Ok(Err(e)) => anyhow::bail!("the load generator could not start: {e}"),
            Err(e) => anyhow::bail!("a workload task failed: {e}"),
        }
    }
    // The timeline ends at end_ns even when the last workload ended earlier.
    let end = t0 + Duration::from_nanos(end_ns);
    tokio::select! {
        () = tokio::time::sleep_until(tokio::time::Instant::from_std(end)) => {}
        () = async { while !stop.is_stopped() { tokio::time::sleep(Duration::from_millis(50)).await } } => {}
    }
    tokio::time::sleep(DRAIN).await;
    watcher.abort();
    Ok(reports)
}

/// `rate` divided among `n` targets.
fn scale(rate: &loadgen::RateProfile, n: u32) -> loadgen::RateProfile {
    let f = f64::from(n.max(1));
    match rate {
        loadgen::RateProfile::Max => loadgen::RateProfile::Max,
        loadgen::RateProfile::Constant { rps } => loadgen::RateProfile::Constant { rps: rps / f },
        loadgen::RateProfile::Ramp {
            from_rps,
            to_rps,
            over,
        } => loadgen::RateProfile::Ramp {
            from_rps: from_rps / f,
            to_rps: to_rps / f,
            over: *over,
        },
        loadgen::RateProfile::Steps(steps) => loadgen::RateProfile::Steps(
            steps
                .iter()
                .map(|s| loadgen::Step {
                    rps: s.rps / f,
                    hold: s.hold,
                })
                .collect(),
        ),
    }
}

fn result(
    loaded: &Loaded,
    opts: &RealOptions,
    collected: collect::Collected,
    duration_ns: u64,
    interrupted: bool,
    not_applied: Vec<String>,
    warnings: Vec<String>,
) -> ScenarioResult {
    let sc = &loaded.scenario;
    let mut result = collected.finished.into_result(RunInfo {
        scenario: ScenarioInfo {
            name: sc.name.clone(),
            file: opts.file.clone(),
            hash: format!("{:016x}", loaded.hash),
            seed: opts.seed,
            mode: "real".to_owned(),
            duration_requested_ns: sc.duration_ns,
            truncated_to_ns: opts.duration_ns.filter(|d| *d < sc.duration_ns),
        },
        interrupted,
        duration_ns,
        workloads: sc
            .workload
            .iter()
            .map(|w| {
                (
                    w.target.clone(),
                    sim::mean_rate(w, sc.duration_ns, duration_ns),
                )
            })
            .collect(),
        instances: collected.instances,
        not_applied,
        warnings,
        sim: None,
        provenance: ScenarioProvenance {
            meshrig_version: env!("CARGO_PKG_VERSION").to_owned(),
            command: opts.command.clone(),
        },
    });
    let mut verdicts = scenario::evaluate(&sc.assertions, &result);
    for (v, a) in verdicts.iter_mut().zip(&sc.assertions) {
        // Wall-clock latency depends on the machine: reported, never gating.
        v.advisory = scenario::is_timing(a);
    }
    result.assertions = verdicts;
    result
}
