//! The simulated mesh: instances with their sidecars, load generators, a control plane
//! and a CA, on the modelled network — driven by the discrete-event [`Scheduler`].
//!
//! The world moves bytes and charges CPU; every decision a sidecar makes (route,
//! fault, retry, endpoint pick, connection pool, ejection, mTLS mode, authorization,
//! certificate renewal) is mesh-core's, the same code the real proxy runs.
//!
//! One request from a caller to a service goes:
//! 1. caller's outbound sidecar: proxy CPU, then the route decision ([`request`]);
//! 2. per try: load-balancer pick, pool admission, a pooled connection (TCP round
//!    trip, TLS 1.3 handshake with CPU on both sides when mTLS), then the network;
//! 3. callee's inbound sidecar: peer authentication, authorization, proxy CPU;
//! 4. the application: service time on the instance's CPU cores, then its fan-out
//!    calls one after another (each a request of its own), then the response;
//! 5. back through both sidecars; the outcome feeds outlier detection and the retry
//!    state machine, which may try again.

mod build;
mod control;
mod faults;
mod identity;
mod request;
mod roots;

pub use request::{mean_rate, workload_target_name};

use results::recorder::RunInfo;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mesh_core::Time;
use results::scenario::{
    InstanceStats, ScenarioInfo, ScenarioProvenance, ScenarioResult, SimStats,
};

use crate::cost::CostTable;
use crate::engine::Scheduler;
use crate::rng::SimRng;

pub use build::BuildError;

/// How long in-flight requests may finish after the workload ends before the run
/// stops (the default client timeout).
const DRAIN_NS: u64 = 30_000_000_000;

/// Events between checks of the stop flag and progress reports.
const CHECK_EVERY: u64 = 1 << 16;

/// How a sim run is set up beyond the scenario.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Overrides `spec.seed`.
    pub seed: Option<u64>,
    /// Truncates the timeline: nothing after it happens.
    pub duration_ns: Option<u64>,
    /// The CPU cost table.
    pub cost_table: CostTable,
    /// Set from another thread (Ctrl-C) to stop early; the result is partial.
    pub stop: Option<Arc<AtomicBool>>,
    /// Events of one kind kept in the log (all are counted). Default 10,000.
    pub events_per_kind: u64,
    /// The scenario file as given (for the result).
    pub scenario_file: String,
    /// The command line (for the result's provenance).
    pub command: Vec<String>,
}

impl SimOptions {
    /// Options with the default cost table, the scenario's seed and duration.
    pub fn new(scenario_file: impl Into<String>) -> Self {
        SimOptions {
            seed: None,
            duration_ns: None,
            cost_table: CostTable::default_table(),
            stop: None,
            events_per_kind: 10_000,
            scenario_file: scenario_file.into(),
            command: Vec::new(),
        }
    }
}

/// Where a run stands, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub now_ns: u64,
    pub end_ns: u64,
    pub events: u64,
}

/// Runs a loaded scenario to the end (or until stopped) and returns its result, with
/// assertion verdicts. Deterministic: the same scenario, options and binary give the
/// same result.
pub fn run(
    loaded: &scenario::Loaded,
    options: &SimOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ScenarioResult, BuildError> {
    let mut world = World::build(loaded, options)?;
    world.run_loop(options.stop.as_deref(), progress);
    Ok(world.finish(loaded, options))
}

// === the world ===

/// What the scheduler carries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ev {
    /// Open-loop workload `w`: send one request, schedule the next.
    Arrival { w: u32 },
    /// Closed-loop user: send its next request.
    UserNext { w: u32, user: u32 },
    /// A call's outbound proxy work is done: route it.
    Route { call: u32, tag: u32 },
    /// Start the next try of a call (after a backoff or an injected delay).
    Try { call: u32, tag: u32 },
    /// A connection finished (or failed) its set-up.
    Connected {
        node: u32,
        cluster: u32,
        conn: u64,
        epoch: u32,
        fail: Option<request::ConnFail>,
    },
    /// A TLS handshake flight of a new connection reached the server (`server`) or,
    /// with the server's answer, the client.
    Handshake {
        node: u32,
        cluster: u32,
        conn: u64,
        epoch: u32,
        callee: u32,
        server: bool,
    },
    /// A request reached the callee's inbound side.
    Arrive { attempt: u32, tag: u32 },
    /// The callee's application finished its compute step.
    AppDone { task: u32, tag: u32 },
    /// A response (or a reset) reached the caller's sidecar.
    Respond {
        attempt: u32,
        tag: u32,
        status: u16,
        reset: bool,
    },
    /// A per-try or route timeout of a call.
    CallTimer { call: u32, tag: u32 },
    /// The client timeouts of workload entry `w` that are due now.
    ClientTimeouts { w: u32 },
    /// Outlier-detection sweep of one cluster of one sidecar.
    Sweep { node: u32, cluster: u32, epoch: u32 },
    /// Certificate lifecycle timer of a sidecar.
    CertTimer { node: u32, epoch: u32 },
    /// The CA's answer to a sidecar's CSR (`None`: the CA was unreachable).
    CertAnswer {
        node: u32,
        epoch: u32,
        issued: Option<identity::Issued>,
    },
    /// The CA's root rotation reaches its next phase (signing switch, old root drop).
    RootTimer,
    /// The control plane's config version reaches a proxy.
    ConfigArrive { node: u32, version: u32 },
    /// Fault `i` begins.
    FaultStart { i: u32 },
    /// Fault `i` is undone (`for` elapsed).
    FaultEnd { i: u32 },
    /// The end of the timeline: take the figures that stop here (CPU busy time).
    RunEnd,
}

/// The simulated mesh.
pub(crate) struct World {
    pub sched: Scheduler<Ev>,
    pub rng: SimRng,
    pub costs: CostTable,
    pub net: crate::net::Network,
    pub nodes: Vec<build::Node>,
    pub topo: build::Topo,
    pub control: control::ControlPlane,
    pub ca: identity::Ca,
    pub reqs: request::Requests,
    pub metrics: results::recorder::RunRecorder,
    pub faults: faults::Faults,
    /// End of the workload (and of the timeline), after `--duration`.
    pub end_ns: u64,
    /// `spec.duration`: what rate profiles span.
    pub scenario_end_ns: u64,
    /// CPU work each node had executed when the timeline ended (`Ev::RunEnd`).
    pub cpu_at_end: Option<Vec<u64>>,
    pub seed: u64,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("now", &self.sched.now())
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl World {
    pub fn now(&self) -> Time {
        self.sched.now()
    }

    fn run_loop(&mut self, stop: Option<&AtomicBool>, progress: &mut dyn FnMut(Progress)) {
        let hard_end = self.end_ns.saturating_add(DRAIN_NS);
        let mut next_check = CHECK_EVERY;
        while let Some(next) = self.sched.peek_time() {
            if next.as_nanos() > hard_end {
                break;
            }
            let (at, ev) = self.sched.pop().expect("peeked");
            self.handle(ev);
            // Past the end, the run only waits for requests still in flight.
            if at.as_nanos() >= self.end_ns && self.reqs.in_flight() == 0 {
                break;
            }
            if self.sched.processed() >= next_check {
                next_check += CHECK_EVERY;
                progress(Progress {
                    now_ns: at.as_nanos().min(self.end_ns),
                    end_ns: self.end_ns,
                    events: self.sched.processed(),
                });
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    self.faults.interrupted = true;
                    break;
                }
            }
        }
        progress(Progress {
            now_ns: self.end_ns,
            end_ns: self.end_ns,
            events: self.sched.processed(),
        });
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival { w } => self.on_arrival(w),
            Ev::UserNext { w, user } => self.on_user_next(w, user),
            Ev::Route { call, tag } => self.on_route(call, tag),
            Ev::Try { call, tag } => self.on_try(call, tag),
            Ev::Connected {
                node,
                cluster,
                conn,
                epoch,
                fail,
            } => self.on_connected(node, cluster, conn, epoch, fail),
            Ev::Handshake {
                node,
                cluster,
                conn,
                epoch,
                callee,
                server,
            } => self.on_handshake(node, cluster, conn, epoch, callee, server),
            Ev::Arrive { attempt, tag } => self.on_arrive(attempt, tag),
            Ev::AppDone { task, tag } => self.on_app_done(task, tag),
            Ev::Respond {
                attempt,
                tag,
                status,
                reset,
            } => self.on_respond(attempt, tag, status, reset),
            Ev::CallTimer { call, tag } => self.on_call_timer(call, tag),
            Ev::ClientTimeouts { w } => self.on_client_timeouts(w),
            Ev::Sweep {
                node,
                cluster,
                epoch,
            } => self.on_sweep(node, cluster, epoch),
            Ev::CertTimer { node, epoch } => self.on_cert_timer(node, epoch),
            Ev::CertAnswer {
                node,
                epoch,
                issued,
            } => self.on_cert_answer(node, epoch, issued),
            Ev::RootTimer => self.on_root_timer(),
            Ev::ConfigArrive { node, version } => self.on_config_arrive(node, version),
            Ev::FaultStart { i } => self.on_fault(i, true),
            Ev::FaultEnd { i } => self.on_fault(i, false),
            Ev::RunEnd => {
                let now = self.now();
                self.cpu_at_end = Some(self.nodes.iter().map(|n| n.cpu.executed_ns(now)).collect());
            }
        }
    }

    /// Logs an event at the current time.
    pub fn log(&mut self, kind: &str, at: &str, detail: impl Into<String>) {
        let now = self.now().as_nanos();
        self.metrics.event(now, kind, at, detail);
    }

    fn finish(self, loaded: &scenario::Loaded, options: &SimOptions) -> ScenarioResult {
        let sc = &loaded.scenario;
        let duration_ns = self.end_ns;
        let cores_ns = |n: &build::Node| f64::from(n.cores) * duration_ns.max(1) as f64;
        // Work done by the end of the timeline (or by now, when stopped early: every
        // job was submitted before now, so the backlog arithmetic holds).
        let cpu_done: Vec<u64> = self.cpu_at_end.clone().unwrap_or_else(|| {
            let now = self.now();
            self.nodes.iter().map(|n| n.cpu.executed_ns(now)).collect()
        });
        let instances: Vec<InstanceStats> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.instance.is_some())
            .map(|(i, n)| {
                let (s, v) = n.instance.expect("filtered");
                InstanceStats {
                    name: n.name.clone(),
                    service: sc.topology.services[s].name.clone(),
                    version: sc.topology.services[s].versions[v].name.clone(),
                    zone: sc.topology.zones[n.zone].name.clone(),
                    requests_served: n.counters.requests_served,
                    errors_served: n.counters.errors_served,
                    ejections: n.counters.ejections,
                    cpu_utilization: round4(cpu_done[i] as f64 / cores_ns(n)),
                    certs_issued: n.counters.certs_issued,
                    cert_expiries: n.counters.cert_expiries,
                }
            })
            .collect();
        let events_processed = self.sched.processed();
        let peak = self.sched.peak_len() as u64;
        let end_time = self.now().as_nanos();
        let interrupted = self.faults.interrupted;
        let not_applied = self.faults.not_applied.clone();
        let mut warnings = self.faults.warnings.clone();
        let unfinished = self.reqs.in_flight();
        if unfinished > 0 && !interrupted {
            warnings.push(format!(
                "{unfinished} requests were still in flight {} s after the end of the run, when \
                 the simulation stopped: they count as started, not as succeeded or failed",
                DRAIN_NS / 1_000_000_000
            ));
        }
        let seed = self.seed;
        let mut result = self.metrics.finish(duration_ns).into_result(RunInfo {
            scenario: ScenarioInfo {
                name: sc.name.clone(),
                file: options.scenario_file.clone(),
                hash: format!("{:016x}", loaded.hash),
                seed,
                mode: "sim".to_owned(),
                duration_requested_ns: sc.duration_ns,
                truncated_to_ns: options.duration_ns.filter(|d| *d < sc.duration_ns),
            },
            interrupted,
            duration_ns,
            workloads: sc
                .workload
                .iter()
                .map(|w| (w.target.clone(), mean_rate(w, sc.duration_ns, duration_ns)))
                .collect(),
            instances,
            not_applied,
            warnings,
            sim: Some(SimStats {
                events_processed,
                peak_queue_len: peak,
                instances: self.nodes.iter().filter(|n| n.instance.is_some()).count() as u64,
                end_time_ns: end_time,
                cost_table: format!("{}@{}", options.cost_table.name, options.cost_table.version),
            }),
            provenance: ScenarioProvenance {
                meshrig_version: env!("CARGO_PKG_VERSION").to_owned(),
                command: options.command.clone(),
            },
        });
        result.assertions = scenario::evaluate(&sc.assertions, &result);
        result
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
