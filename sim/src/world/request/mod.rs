//! The life of a request: from the caller's outbound sidecar, try by try, through the
//! callee's inbound sidecar and application, and back.
//!
//! Every policy decision is mesh-core's: `route::decide` (route, fault, timeout,
//! retries), `LoadBalancer::pick`, `ConnectionPool` (admission, connections, circuit
//! breaking, retry budget), `OutlierDetector`, `RetryState`, `decide_client_tls` /
//! `handshake_outcome`, `security::evaluate` (authorization). This module only moves
//! messages, charges CPU and keeps score.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_core::Time;
use mesh_core::cost::{Cost, CostKind, TlsRole};
use mesh_core::outlier::Outcome;
use mesh_core::pool::{ConnectionId, FailReason, PoolAction, RequestId};
use mesh_core::retry::{AttemptResult, GiveUpReason, RetryDecision, RetryPolicy, RetryState};
use mesh_core::route::{RouteOutcome, RouteRequest, decide};
use mesh_core::security::client_tls::{AutoMtls, HandshakeOutcome};
use mesh_core::security::{
    AuthzDecision, ClientTlsMode, RequestAttributes, decide_client_tls, handshake_outcome,
};
use rand::Rng;

use super::{Ev, World};
use results::recorder::Outcome as Done;

/// Bytes of a request's headers on the wire (besides its body).
const REQUEST_HEADER_BYTES: u64 = 200;
/// Bytes of a response's headers on the wire.
const RESPONSE_HEADER_BYTES: u64 = 150;
/// Istio's default `connectTimeout`.
const CONNECT_TIMEOUT_NS: u64 = 10_000_000_000;

/// A kind of request a caller sends: a workload entry, or one call of an application.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub service: usize,
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub request_bytes: u64,
    pub new_connection: bool,
    /// `client`, or the calling service's name.
    pub caller_name: String,
    /// Metric target id of the edge `caller->service`.
    pub edge_target: usize,
    /// The service's FQDN, as the request's authority.
    pub authority: String,
}

/// Why a connection could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnFail {
    /// Nothing listens (the instance is down): refused after a round trip.
    Refused,
    /// No answer (zone down, partition): `connectTimeout` elapsed.
    Timeout,
    /// The TLS handshake failed (modes do not fit, or a certificate is missing,
    /// expired or not yet valid on the verifier's clock).
    Tls,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin {
    Workload {
        w: u32,
        user: Option<u32>,
    },
    Task {
        task: u32,
        tag: u32,
    },
    /// A shadow copy sent by the caller's sidecar for a route's `mirror`: nobody
    /// waits for it (see [`mirror`]).
    Mirror,
}

/// What the route decision said to do with a call (mesh-core's plan).
type Plan = mesh_core::route::UpstreamPlan;

/// A call answered by the sidecar itself: the status (or none) and an error kind
/// (empty for a plain response).
type LocalAnswer = (Option<u16>, &'static str);

#[derive(Debug)]
struct Call {
    tag: u32,
    caller: u32,
    template: u32,
    origin: Origin,
    start: Time,
    /// Set by the route decision; `None` means the call was answered locally.
    plan: Option<Plan>,
    /// A local answer: (status, error kind).
    local: Option<(Option<u16>, &'static str)>,
    retry: Option<RetryState>,
    cluster: Option<u32>,
    attempt: Option<u32>,
    /// The time the call's timer is set for.
    timer_at: Option<Time>,
    /// The pool refused a waiting try (`http2MaxRequests`): Envoy answers 503 `UO`
    /// and never retries an overflow.
    overflowed: bool,
}

#[derive(Debug)]
struct Attempt {
    tag: u32,
    call: u32,
    call_gen: u32,
    /// The callee node.
    node: u32,
    endpoint: mesh_core::EndpointId,
    cluster: u32,
    request: RequestId,
    conn: Option<ConnectionId>,
    start: Time,
    tls: bool,
}

#[derive(Debug)]
struct Task {
    tag: u32,
    node: u32,
    epoch: u32,
    attempt: u32,
    attempt_gen: u32,
    next_call: usize,
    failed: bool,
}

/// A slab with generation-checked handles: a stale event finds another generation.
#[derive(Debug)]
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Indices of the live items, in index order.
    fn live(&self) -> impl Iterator<Item = (u32, &T)> + '_ {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((i as u32, t.as_ref()?)))
    }

    fn insert(&mut self, item: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = Some(item);
                i
            }
            None => {
                self.items.push(Some(item));
                (self.items.len() - 1) as u32
            }
        }
    }
    fn get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize)?.as_ref()
    }
    fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize)?.as_mut()
    }
    fn remove(&mut self, i: u32) -> Option<T> {
        let item = self.items.get_mut(i as usize)?.take();
        if item.is_some() {
            self.free.push(i);
        }
        item
    }
}

/// Every request, try and application task in flight.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    pub templates: Vec<Template>,
    pub workload_templates: Vec<u32>,
    calls: Slab<Call>,
    attempts: Slab<Attempt>,
    tasks: Slab<Task>,
    next_gen: u32,
    in_flight: u64,
    /// Messages on a held link: (from, to, bytes, event to schedule on delivery).
    pub held: Vec<(u32, u32, u64, Ev)>,
    /// Templates of shadow requests, by (original template, mirror service).
    mirror_templates: BTreeMap<(u32, usize), u32>,
    /// Per workload entry: the next intended send time (open loop).
    pub next_arrival_ns: Vec<f64>,
    /// Per workload entry: client deadlines `(at_ns, call, tag)` in time order
    /// (finished calls stay until their deadline comes up, then are skipped).
    pub client_deadlines: Vec<std::collections::VecDeque<(u64, u32, u32)>>,
}

impl Requests {
    pub fn template(&mut self, t: Template) -> u32 {
        self.templates.push(t);
        (self.templates.len() - 1) as u32
    }

    /// Requests from the load generators not finished yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    fn next_tag(&mut self) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        self.next_gen
    }
}

/// The metric target of workload entry `i` (internal; reported under `workloads`).
pub fn workload_target_name(i: usize) -> String {
    results::recorder::workload_target(i)
}

/// The mean requested rate of an open-loop workload over the run.
///
/// The profile spans the entry's own duration (to `spec.duration`, `scenario_ns`);
/// the mean is over the part that ran, up to `run_ns` (shorter with `--duration`).
pub fn mean_rate(w: &scenario::Workload, scenario_ns: u64, run_ns: u64) -> Option<f64> {
    let scenario::Load::Open(profile) = &w.load else {
        return None;
    };
    let span = w
        .duration_ns
        .unwrap_or(scenario_ns.saturating_sub(w.start_ns));
    let ran = span.min(run_ns.saturating_sub(w.start_ns));
    if ran == 0 {
        return Some(0.0);
    }
    let steps = 1_000u64;
    let total: f64 = (0..steps)
        .map(|i| profile.rate_at(ran * i / steps + ran / (2 * steps), span))
        .sum();
    Some((total / steps as f64 * 1000.0).round() / 1000.0)
}

fn ns(d: u64) -> Duration {
    Duration::from_nanos(d)
}

// === impl World: requests ===

mod mirror;
mod outcome;
mod send;
mod serve;
mod wire;

// === impl World: shared helpers ===

impl World {
    /// One-way latency sample from `a` to `b` (half a round trip), plus the
    /// `linkLatency` of a fault between their services.
    pub(in crate::world) fn one_way(&mut self, a: u32, b: u32) -> u64 {
        let now = self.now();
        self.net.rtt_sample(now, a, b, &mut self.rng) / 2 + self.service_link_latency(a, b)
    }

    fn charge(&mut self, node: u32, work_ns: u64) -> Time {
        let now = self.now();
        self.nodes[node as usize].cpu.submit(now, work_ns)
    }

    fn cost(&self, kind: CostKind, bytes: u64) -> u64 {
        self.costs.charge(&Cost::with_bytes(kind, bytes))
    }

    /// Whether `node` has an outbound sidecar.
    fn outbound_proxy(&self) -> bool {
        self.topo.mesh && self.topo.proxies_per_hop >= 1
    }

    /// Whether callees have an inbound sidecar.
    fn inbound_proxy(&self) -> bool {
        self.topo.mesh && self.topo.proxies_per_hop >= 2
    }

    /// A crashed instance loses everything in flight: the requests its application
    /// was serving (their callers see the connection reset) and the calls it was
    /// making (nobody waits for them any more).
    pub(crate) fn drop_requests_of(&mut self, node: u32) {
        let now = self.now();
        let tasks: Vec<u32> = self
            .reqs
            .tasks
            .live()
            .filter(|(_, t)| t.node == node)
            .map(|(i, _)| i)
            .collect();
        for i in tasks {
            let Some(t) = self.reqs.tasks.remove(i) else {
                continue;
            };
            let caller = self
                .reqs
                .attempts
                .get(t.attempt)
                .filter(|a| a.tag == t.attempt_gen)
                .and_then(|a| self.reqs.calls.get(a.call))
                .map(|c| c.caller);
            if let Some(caller) = caller {
                self.send_reset(caller, node, t.attempt, t.attempt_gen, now);
            }
        }
        let calls: Vec<u32> = self
            .reqs
            .calls
            .live()
            .filter(|(_, c)| c.caller == node)
            .map(|(i, _)| i)
            .collect();
        for i in calls {
            if let Some(c) = self.reqs.calls.remove(i) {
                if let Some(a) = c.attempt {
                    self.reqs.attempts.remove(a);
                }
                if let Origin::Workload { .. } = c.origin {
                    self.reqs.in_flight -= 1;
                }
            }
        }
    }
}

fn final_status(last: AttemptResult) -> (Option<u16>, Option<&'static str>) {
    match last {
        AttemptResult::Response { status, .. } => (Some(status), None),
        // The sidecar answers a failed upstream with 503 (UF/URX) or 504 (UT).
        AttemptResult::ConnectFailure => (Some(503), Some("connect_failure")),
        AttemptResult::Reset | AttemptResult::RefusedStream => (Some(503), Some("reset")),
        AttemptResult::PerTryTimeout => (Some(504), Some("timeout")),
    }
}
