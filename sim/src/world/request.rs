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
use mesh_core::route::{RouteOutcome, RouteRequest, RouteRetries, decide};
use mesh_core::security::client_tls::{AutoMtls, HandshakeOutcome};
use mesh_core::security::{
    AuthzDecision, ClientTlsMode, RequestAttributes, decide_client_tls, handshake_outcome,
};
use rand::Rng;

use super::metrics::Outcome as Done;
use super::{Ev, World};

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
    Workload { w: u32, user: Option<u32> },
    Task { task: u32, tag: u32 },
}

/// What the route decision said to do with a call.
#[derive(Debug, Clone)]
struct Plan {
    host: String,
    subset: Option<String>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    delay: Option<Duration>,
    abort: Option<u16>,
}

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
    /// Per workload entry: the next intended send time (open loop).
    pub next_arrival_ns: Vec<f64>,
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
pub(crate) fn workload_target_name(i: usize) -> String {
    format!("#w{i}")
}

/// The mean requested rate of an open-loop workload over the run.
pub(crate) fn mean_rate(w: &scenario::Workload, run_ns: u64) -> Option<f64> {
    let scenario::Load::Open(profile) = &w.load else {
        return None;
    };
    let span = w.duration_ns.unwrap_or(run_ns.saturating_sub(w.start_ns));
    if span == 0 {
        return Some(0.0);
    }
    let steps = 1_000u64;
    let total: f64 = (0..steps)
        .map(|i| profile.rate_at(span * i / steps + span / (2 * steps), span))
        .sum();
    Some((total / steps as f64 * 1000.0).round() / 1000.0)
}

fn retry_policy(r: &RouteRetries) -> RetryPolicy {
    if r.istio_default {
        return RetryPolicy::istio_default();
    }
    let mut p = RetryPolicy::configured(r.attempts, Some(&r.retry_on))
        .unwrap_or_else(|_| RetryPolicy::istio_default());
    p.per_try_timeout = r.per_try_timeout;
    p
}

fn ns(d: u64) -> Duration {
    Duration::from_nanos(d)
}

// === impl World: requests ===

impl World {
    /// One-way latency sample from `a` to `b` (half a round trip).
    fn one_way(&mut self, a: u32, b: u32) -> u64 {
        let now = self.now();
        self.net.rtt_sample(now, a, b, &mut self.rng) / 2
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

    pub(super) fn on_arrival(&mut self, w: u32) {
        let now = self.now().as_nanos();
        let wl = &self.faults.workloads[w as usize];
        // The profile spans the entry's own duration (a ramp keeps its slope when
        // `--duration` cuts the run short); sending stops at the truncated end.
        let span = wl
            .duration_ns
            .unwrap_or(self.scenario_end_ns.saturating_sub(wl.start_ns));
        let end = (wl.start_ns + span).min(self.end_ns);
        if now >= end {
            return;
        }
        let scenario::Load::Open(profile) = &wl.load else {
            return;
        };
        let poisson = wl.poisson_arrivals;
        // Intended send times are kept in fractional nanoseconds, so a rate of
        // 300/s gives exactly 300 requests a second, not one more every 3 s.
        let intended = self.reqs.next_arrival_ns[w as usize].max(now as f64);
        let rate = profile.rate_at(now - wl.start_ns, span);
        let next = if rate > 0.0 {
            let node = self.topo.workload_nodes[w as usize];
            let t = self.reqs.workload_templates[w as usize];
            self.start_call(node, t, Origin::Workload { w, user: None });
            let mean_gap = 1e9 / rate;
            let gap = if poisson {
                // Inverse transform of an exponential with that mean.
                -mean_gap * (1.0 - self.rng.random::<f64>()).ln()
            } else {
                mean_gap
            };
            intended + gap
        } else {
            // A zero rate (before the first step): look again in 10 ms.
            intended + 10_000_000.0
        };
        self.reqs.next_arrival_ns[w as usize] = next;
        self.sched
            .schedule_at(Time(next.round() as u64), Ev::Arrival { w });
    }

    pub(super) fn on_user_next(&mut self, w: u32, user: u32) {
        let now = self.now().as_nanos();
        let wl = &self.faults.workloads[w as usize];
        let end = wl
            .duration_ns
            .map_or(self.end_ns, |d| (wl.start_ns + d).min(self.end_ns));
        if now >= end {
            return;
        }
        let node = self.topo.workload_nodes[w as usize];
        let t = self.reqs.workload_templates[w as usize];
        self.start_call(
            node,
            t,
            Origin::Workload {
                w,
                user: Some(user),
            },
        );
    }

    /// A caller sends a request: the outbound sidecar takes it (proxy CPU plus the
    /// route decision's cost), then routes it.
    fn start_call(&mut self, caller: u32, template: u32, origin: Origin) {
        let now = self.now();
        let t = &self.reqs.templates[template as usize];
        let service = t.service;
        let bytes = REQUEST_HEADER_BYTES + t.request_bytes;
        let edge = t.edge_target;
        if let Origin::Workload { w, .. } = origin {
            self.metrics.started(self.topo.client_target);
            self.metrics.started(self.topo.workload_target[w as usize]);
            self.reqs.in_flight += 1;
        }
        self.metrics.started(self.topo.service_target[service]);
        self.metrics.started(edge);

        let (plan, local, work) = if self.outbound_proxy() {
            self.route_decision(caller, template, bytes)
        } else {
            let host = self.topo.registry.services[service].fqdn();
            let plan = Plan {
                host,
                subset: None,
                retry: RetryPolicy::disabled(),
                timeout: None,
                delay: None,
                abort: None,
            };
            (Some(plan), None, 0)
        };
        let tag = self.reqs.next_tag();
        let call = self.reqs.calls.insert(Call {
            tag,
            caller,
            template,
            origin,
            start: now,
            plan,
            local,
            retry: None,
            cluster: None,
            attempt: None,
            timer_at: None,
        });
        if let Origin::Workload { w, .. } = origin {
            let timeout = self.faults.workloads[w as usize].timeout_ns;
            self.sched
                .schedule_in(timeout, Ev::ClientTimeout { call, tag });
        }
        let at = if work > 0 {
            self.charge(caller, work)
        } else {
            now
        };
        self.sched.schedule_at(at, Ev::Route { call, tag });
    }

    /// mesh-core's route decision for a request of `template` from `caller`, and the
    /// CPU its sidecar spends on the request.
    fn route_decision(
        &mut self,
        caller: u32,
        template: u32,
        bytes: u64,
    ) -> (Option<Plan>, Option<(Option<u16>, &'static str)>, u64) {
        let base = self.cost(CostKind::ProxyRequest, bytes);
        let n = &self.nodes[caller as usize];
        let Some(snap) = n.sidecar.snapshot.clone() else {
            return (None, Some((Some(503), "no_config")), base);
        };
        let t = &self.reqs.templates[template as usize];
        let req = RouteRequest {
            authority: &t.authority,
            method: &t.method,
            path: &t.path,
            scheme: "http",
            headers: &t.headers,
            source_labels: &n.labels,
            source_namespace: &n.namespace,
            gateway: "mesh",
        };
        let decision = decide(&snap.routes, &req, &mut self.rng, false);
        let work = base + self.costs.charge(&decision.cost);
        let plan = match decision.outcome {
            RouteOutcome::Passthrough {
                destination,
                retries,
            } => Plan {
                host: destination.host,
                subset: None,
                retry: retry_policy(&retries),
                timeout: None,
                delay: None,
                abort: None,
            },
            RouteOutcome::Forward(f) => {
                let d = f.destination();
                Plan {
                    host: d.host.clone(),
                    subset: d.subset.clone(),
                    retry: retry_policy(&f.retries),
                    timeout: f.timeout,
                    delay: f.delay,
                    abort: f.abort,
                }
            }
            RouteOutcome::Redirect(_) => return (None, Some((Some(301), "")), work),
            RouteOutcome::DirectResponse { status, .. } => {
                return (None, Some((Some(status), "")), work);
            }
            RouteOutcome::NoRoute => return (None, Some((Some(404), "")), work),
        };
        (Some(plan), None, work)
    }

    pub(super) fn on_route(&mut self, call: u32, tag: u32) {
        let Some(c) = self.reqs.calls.get(call).filter(|c| c.tag == tag) else {
            return;
        };
        if let Some((status, error)) = c.local {
            let error = (!error.is_empty()).then_some(error);
            self.finish_call(call, status, error, 0);
            return;
        }
        let plan = c
            .plan
            .clone()
            .expect("a call without a local answer has a plan");
        if let Some(delay) = plan.delay {
            self.metrics.count_event("fault_delay");
            let tag = self.reqs.calls.get(call).map_or(0, |c| c.tag);
            self.sched
                .schedule_in(delay.as_nanos() as u64, Ev::Try { call, tag });
            // Abort (if any) is applied when the delayed try starts.
            if let Some(c) = self.reqs.calls.get_mut(call) {
                if let Some(p) = &mut c.plan {
                    p.delay = None;
                }
            }
            return;
        }
        self.on_try(call, tag);
    }

    pub(super) fn on_try(&mut self, call: u32, tag: u32) {
        let now = self.now();
        let Some(c) = self.reqs.calls.get_mut(call).filter(|c| c.tag == tag) else {
            return;
        };
        let plan = c.plan.as_mut().expect("routed calls have a plan");
        if let Some(status) = plan.abort {
            self.metrics.count_event("fault_abort");
            self.finish_call(call, Some(status), None, 0);
            return;
        }
        let caller = c.caller;
        if c.retry.is_none() {
            // The policy moves into the retry state machine on the first try.
            let policy = std::mem::replace(&mut plan.retry, RetryPolicy::disabled());
            c.retry = Some(RetryState::start(policy, now, plan.timeout));
        }
        let cl = match c.cluster {
            Some(cl) => cl,
            None => {
                let (host, subset) = (plan.host.clone(), plan.subset.clone());
                let Some(cl) = self.cluster_for(caller, &host, subset.as_deref()) else {
                    self.finish_call(call, Some(503), Some("no_cluster"), 0);
                    return;
                };
                if let Some(c) = self.reqs.calls.get_mut(call) {
                    c.cluster = Some(cl);
                }
                cl
            }
        };
        if self.outbound_proxy() {
            let pick_cost = self.cost(CostKind::LbPick, 0) + self.cost(CostKind::PoolAdmission, 0);
            let _ = self.charge(caller, pick_cost);
        }
        let c = self.reqs.calls.get(call).expect("checked above");
        let exclude = c.retry.as_ref().expect("set above").excluded_endpoints();
        let cluster = &mut self.nodes[caller as usize].sidecar.clusters[cl as usize];
        let ctx = mesh_core::lb::PickContext {
            exclude,
            ..Default::default()
        };
        // Ejected endpoints leave the load-balancing set; with none ejected, every
        // endpoint is in it and the balancer need not ask about each one.
        let pick = match cluster.outlier.as_ref().filter(|od| od.ejected_count() > 0) {
            Some(od) => cluster
                .lb
                .pick(&ctx, |id| !od.is_ejected(id), &mut self.rng),
            None => cluster.lb.pick_all_healthy(&ctx, &mut self.rng),
        };
        let pick = match pick {
            Ok(p) => p,
            Err(_) => {
                let attempts = self.call_attempts(call);
                self.finish_call(call, Some(503), Some("no_healthy_upstream"), attempts);
                return;
            }
        };
        let endpoint = pick.endpoint;
        let permit = match cluster.pool.try_acquire_request(now, endpoint) {
            Ok(p) => p,
            Err(overflow) => {
                let host = cluster.policy.host.clone();
                let at = self.nodes[caller as usize].name.clone();
                self.log(
                    "breaker_overflow",
                    &at,
                    format!("{host}: {:?} (limit {})", overflow.reason, overflow.limit),
                );
                let attempts = self.call_attempts(call);
                self.finish_call(call, Some(503), Some("overflow"), attempts);
                return;
            }
        };
        cluster.lb.on_request_start(endpoint);
        let service = cluster.service;
        let Some(node) = self.topo.node_of(service, endpoint) else {
            self.finish_call(call, Some(503), Some("no_cluster"), 0);
            return;
        };
        let c = self.reqs.calls.get_mut(call).expect("checked above");
        let start = c
            .retry
            .as_mut()
            .expect("set above")
            .on_attempt_start(now, endpoint);
        let deadline = start.ok().and_then(|s| s.deadline);
        let call_gen = c.tag;
        let agen = self.reqs.next_tag();
        let attempt = self.reqs.attempts.insert(Attempt {
            tag: agen,
            call,
            call_gen,
            node,
            endpoint,
            cluster: cl,
            request: permit.request,
            conn: None,
            start: now,
            tls: false,
        });
        let c = self.reqs.calls.get_mut(call).expect("checked above");
        c.attempt = Some(attempt);
        if let Some(d) = deadline {
            if c.timer_at != Some(d) {
                c.timer_at = Some(d);
                self.sched.schedule_at(
                    d,
                    Ev::CallTimer {
                        call,
                        tag: call_gen,
                    },
                );
            }
        }
        let (s, v) = self.nodes[node as usize]
            .instance
            .expect("endpoints are instances");
        self.metrics.started(self.topo.version_target[s][v]);
        let cluster = &mut self.nodes[caller as usize].sidecar.clusters[cl as usize];
        cluster.waiting.insert(permit.request, attempt);
        if let mesh_core::pool::Disposition::Dispatched { connection } = permit.disposition {
            cluster.waiting.remove(&permit.request);
            self.dispatch(attempt, connection);
        }
        self.drain_pool(caller, cl);
    }

    fn call_attempts(&self, call: u32) -> u32 {
        self.reqs
            .calls
            .get(call)
            .and_then(|c| c.retry.as_ref())
            .map_or(0, RetryState::attempts)
    }

    /// Carries out what the pool asks for.
    fn drain_pool(&mut self, node: u32, cl: u32) {
        loop {
            let cluster = &mut self.nodes[node as usize].sidecar.clusters[cl as usize];
            let Some(action) = cluster.pool.poll_action() else {
                return;
            };
            match action {
                PoolAction::Connect {
                    connection,
                    endpoint,
                } => self.open_connection(node, cl, connection, endpoint),
                PoolAction::Dispatch {
                    request,
                    connection,
                } => {
                    if let Some(a) = cluster.waiting.remove(&request) {
                        self.dispatch(a, connection);
                    }
                }
                PoolAction::Close { connection, .. } => {
                    cluster.conns.remove(&connection);
                }
                PoolAction::Fail { request, reason } => {
                    if let Some(a) = cluster.waiting.remove(&request) {
                        let (result, outcome) = match reason {
                            FailReason::ConnectFailure => {
                                (AttemptResult::ConnectFailure, Some(Outcome::ConnectFailure))
                            }
                            FailReason::Overflow(_) => (AttemptResult::http(503), None),
                        };
                        self.attempt_done(a, result, outcome, false);
                    }
                }
            }
        }
    }

    /// Opens a pooled connection: a TCP round trip, then (mTLS) a TLS 1.3 handshake
    /// round trip with handshake CPU on both sides.
    fn open_connection(
        &mut self,
        node: u32,
        cl: u32,
        conn: ConnectionId,
        endpoint: mesh_core::EndpointId,
    ) {
        let now = self.now();
        let service = self.nodes[node as usize].sidecar.clusters[cl as usize].service;
        let callee = self
            .topo
            .node_of(service, endpoint)
            .expect("cluster endpoints are instances");
        let epoch = self.nodes[callee as usize].epoch;
        let caller_epoch = self.nodes[node as usize].epoch;
        let tls_decision = self.tls_for(node, cl, callee);
        self.nodes[node as usize].sidecar.clusters[cl as usize]
            .conns
            .insert(
                conn,
                super::control::Conn {
                    epoch,
                    tls: matches!(tls_decision, Ok(true)),
                    ready: false,
                },
            );
        let _ = self.charge(node, self.costs.tcp_connect_ns);
        let syn = self.net.transit(now, node, callee, 64, &mut self.rng);
        let (fail, mut at) = match syn {
            crate::net::Transit::Deliver(t1) if self.nodes[callee as usize].up => {
                match self.net.transit(t1, callee, node, 64, &mut self.rng) {
                    crate::net::Transit::Deliver(t2) => (None, t2),
                    _ => (Some(ConnFail::Timeout), now + ns(CONNECT_TIMEOUT_NS)),
                }
            }
            crate::net::Transit::Deliver(t1) => {
                if self.faults.zone_down(self.nodes[callee as usize].zone) {
                    (Some(ConnFail::Timeout), now + ns(CONNECT_TIMEOUT_NS))
                } else {
                    // The host answers with a reset: nothing listens.
                    let back = t1.as_nanos() - now.as_nanos();
                    (Some(ConnFail::Refused), t1 + ns(back))
                }
            }
            _ => (Some(ConnFail::Timeout), now + ns(CONNECT_TIMEOUT_NS)),
        };
        if fail.is_none() {
            match tls_decision {
                Ok(false) => {}
                Ok(true) => {
                    // ClientHello → server (handshake CPU) → client (handshake CPU).
                    let one_way = self.one_way(node, callee);
                    let server_cpu = self.cost(
                        CostKind::TlsHandshake {
                            role: TlsRole::Server,
                        },
                        0,
                    );
                    let client_cpu = self.cost(
                        CostKind::TlsHandshake {
                            role: TlsRole::Client,
                        },
                        0,
                    );
                    let t_server = self.nodes[callee as usize]
                        .cpu
                        .submit(at + ns(one_way), server_cpu);
                    let back = self.one_way(callee, node);
                    at = self.nodes[node as usize]
                        .cpu
                        .submit(t_server + ns(back), client_cpu);
                    self.metrics.count_event("tls_handshake");
                }
                Err(why) => {
                    let name = self.nodes[node as usize].name.clone();
                    let callee_name = self.nodes[callee as usize].name.clone();
                    self.log(
                        "mtls_handshake_failed",
                        &name,
                        format!("to {callee_name}: {why}"),
                    );
                    let one_way = self.one_way(node, callee);
                    self.sched.schedule_at(
                        at + ns(2 * one_way),
                        Ev::Connected {
                            node,
                            cluster: cl,
                            conn: conn.0,
                            epoch: caller_epoch,
                            fail: Some(ConnFail::Tls),
                        },
                    );
                    return;
                }
            }
        }
        self.sched.schedule_at(
            at,
            Ev::Connected {
                node,
                cluster: cl,
                conn: conn.0,
                epoch: caller_epoch,
                fail,
            },
        );
    }

    /// Whether a connection from `node` to `callee` uses mTLS (`Ok(true)`), plaintext
    /// (`Ok(false)`), or cannot be made (`Err(why)`).
    fn tls_for(&self, node: u32, cl: u32, callee: u32) -> Result<bool, String> {
        if !self.inbound_proxy() {
            return Ok(false);
        }
        let policy = &self.nodes[node as usize].sidecar.clusters[cl as usize].policy;
        let callee_node = &self.nodes[callee as usize];
        let port = callee_node.instance.map_or(0, |(s, _)| {
            self.topo.registry.services[s]
                .ports
                .first()
                .copied()
                .unwrap_or(0)
        });
        // A PeerAuthentication in the config decides; without one, the scenario's
        // mesh-wide `mtls` does.
        let default = self.control.mtls_default();
        let server_mode = callee_node.sidecar.snapshot.as_ref().map_or(default, |s| {
            if s.inbound_mtls.trace.policy.is_none() && !s.inbound_mtls_ports.contains_key(&port) {
                default
            } else {
                s.inbound_mtls_mode(port)
            }
        });
        let client = decide_client_tls(
            policy.client_tls,
            AutoMtls {
                enabled: true,
                destination_has_sidecar: true,
                destination_mtls: Some(server_mode),
            },
        );
        match handshake_outcome(client.mode, server_mode) {
            HandshakeOutcome::Rejected { reason } => Err(format!("{reason:?}")),
            HandshakeOutcome::Plaintext | HandshakeOutcome::PassThrough => Ok(false),
            HandshakeOutcome::Mtls => {
                debug_assert_eq!(client.mode, ClientTlsMode::IstioMutual);
                let now = self.now();
                self.cert_problem(node, callee, now).map_or(Ok(true), Err)
            }
        }
    }

    pub(super) fn on_connected(
        &mut self,
        node: u32,
        cl: u32,
        conn: u64,
        epoch: u32,
        fail: Option<ConnFail>,
    ) {
        let now = self.now();
        let n = &mut self.nodes[node as usize];
        if n.epoch != epoch || !n.up {
            return;
        }
        let Some(cluster) = n.sidecar.clusters.get_mut(cl as usize) else {
            return;
        };
        let conn = ConnectionId(conn);
        match fail {
            None => {
                if let Some(c) = cluster.conns.get_mut(&conn) {
                    c.ready = true;
                }
                cluster.pool.on_connected(now, conn);
            }
            Some(_) => {
                cluster.conns.remove(&conn);
                cluster.pool.on_connect_failed(now, conn);
            }
        }
        self.drain_pool(node, cl);
    }

    /// Sends a try's request on `conn`.
    fn dispatch(&mut self, attempt: u32, conn: ConnectionId) {
        let now = self.now();
        let Some(a) = self.reqs.attempts.get_mut(attempt) else {
            return;
        };
        a.conn = Some(conn);
        let (tag, call, callee, cl) = (a.tag, a.call, a.node, a.cluster);
        let caller = self.reqs.calls.get(call).map_or(0, |c| c.caller);
        let t = self.reqs.calls.get(call).map_or(0, |c| c.template);
        let bytes = REQUEST_HEADER_BYTES + self.reqs.templates[t as usize].request_bytes;
        let conn_info = self.nodes[caller as usize].sidecar.clusters[cl as usize]
            .conns
            .get(&conn)
            .copied();
        if let Some(a) = self.reqs.attempts.get_mut(attempt) {
            a.tls = conn_info.is_some_and(|c| c.tls);
        }
        let stale = conn_info.is_none_or(|c| c.epoch != self.nodes[callee as usize].epoch);
        let ev = Ev::Arrive { attempt, tag };
        if stale {
            // The callee restarted since the connection opened: its reset comes back.
            self.send_reset(caller, callee, attempt, tag, now);
            return;
        }
        self.send(caller, callee, bytes, ev, attempt, tag);
    }

    /// Puts a message on the network; a lost connection comes back as a reset.
    fn send(&mut self, from: u32, to: u32, bytes: u64, ev: Ev, attempt: u32, tag: u32) {
        let now = self.now();
        match self.net.transit(now, from, to, bytes, &mut self.rng) {
            crate::net::Transit::Deliver(at) => self.sched.schedule_at(at, ev),
            crate::net::Transit::Held => self.reqs.held.push((from, to, bytes, ev)),
            crate::net::Transit::Reset { at } | crate::net::Transit::Unreachable { at } => {
                self.sched.schedule_at(
                    at,
                    Ev::Respond {
                        attempt,
                        tag,
                        status: 0,
                        reset: true,
                    },
                );
            }
        }
    }

    fn send_reset(&mut self, caller: u32, callee: u32, attempt: u32, tag: u32, now: Time) {
        let back = self.one_way(callee, caller);
        self.sched.schedule_at(
            now + ns(back),
            Ev::Respond {
                attempt,
                tag,
                status: 0,
                reset: true,
            },
        );
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

    /// Held messages of the link `a`–`b` go out again.
    pub(crate) fn release_held(&mut self) {
        let held = std::mem::take(&mut self.reqs.held);
        let now = self.now();
        for (from, to, bytes, ev) in held {
            match self.net.transit(now, from, to, bytes, &mut self.rng) {
                crate::net::Transit::Deliver(at) => self.sched.schedule_at(at, ev),
                crate::net::Transit::Held => self.reqs.held.push((from, to, bytes, ev)),
                crate::net::Transit::Reset { at } | crate::net::Transit::Unreachable { at } => {
                    if let Ev::Arrive { attempt, tag } | Ev::Respond { attempt, tag, .. } = ev {
                        self.sched.schedule_at(
                            at,
                            Ev::Respond {
                                attempt,
                                tag,
                                status: 0,
                                reset: true,
                            },
                        );
                    }
                }
            }
        }
    }

    /// A request reaches the callee: inbound sidecar (authorization), then the app.
    pub(super) fn on_arrive(&mut self, attempt: u32, tag: u32) {
        let now = self.now();
        let Some(a) = self.reqs.attempts.get(attempt).filter(|a| a.tag == tag) else {
            return;
        };
        let (callee, call, tls) = (a.node, a.call, a.tls);
        let Some(c) = self.reqs.calls.get(call) else {
            return;
        };
        let caller = c.caller;
        let t = &self.reqs.templates[c.template as usize];
        let bytes = REQUEST_HEADER_BYTES + t.request_bytes;
        if !self.nodes[callee as usize].up {
            self.send_reset(caller, callee, attempt, tag, now);
            return;
        }
        let mut work = 0;
        if self.inbound_proxy() {
            work += self.cost(CostKind::ProxyRequest, bytes);
            if tls {
                work += self.costs.tls_record_ns(bytes);
            }
            let denied = self.authorize(caller, callee, call, tls);
            work += self.cost(CostKind::AuthzCheck, 0);
            if denied {
                let at = self.charge(callee, work);
                let back = self.one_way(callee, caller);
                self.metrics.count_event("authz_denied");
                self.sched.schedule_at(
                    at + ns(back),
                    Ev::Respond {
                        attempt,
                        tag,
                        status: 403,
                        reset: false,
                    },
                );
                return;
            }
        }
        let n = &mut self.nodes[callee as usize];
        n.counters.requests_served += 1;
        // One job on the callee's cores: the inbound proxy's work on the request and
        // on the response it will carry back (bytes both ways, TLS records when
        // mTLS), then the application's service time and its per-byte handling.
        let response_bytes = RESPONSE_HEADER_BYTES + n.app.response_bytes;
        work += n.app.service_time.sample(&mut self.rng);
        work += self.costs.app_bytes_ns(bytes + response_bytes);
        if self.inbound_proxy() {
            work += self.costs.proxy_bytes_ns(response_bytes);
            if tls {
                work += self.costs.tls_record_ns(response_bytes);
            }
        }
        let n = &mut self.nodes[callee as usize];
        let epoch = n.epoch;
        let tgen = self.reqs.next_tag();
        let task = self.reqs.tasks.insert(Task {
            tag: tgen,
            node: callee,
            epoch,
            attempt,
            attempt_gen: tag,
            next_call: 0,
            failed: false,
        });
        let at = self.charge(callee, work);
        self.sched.schedule_at(at, Ev::AppDone { task, tag: tgen });
    }

    /// AuthorizationPolicy at the callee's inbound sidecar. True when denied.
    fn authorize(&mut self, caller: u32, callee: u32, call: u32, tls: bool) -> bool {
        let Some(snap) = self.nodes[callee as usize].sidecar.snapshot.clone() else {
            return false;
        };
        if snap.inbound_authz.is_empty() {
            return false;
        }
        let c = self.reqs.calls.get(call).expect("caller checked");
        let t = &self.reqs.templates[c.template as usize];
        let callee_node = &self.nodes[callee as usize];
        let (s, _) = callee_node.instance.expect("callees are instances");
        let rs = &self.topo.registry.services[s];
        let port = rs.ports.first().copied().unwrap_or(0);
        let mut req = RequestAttributes::http(&t.method, &t.path, &rs.fqdn(), port);
        for (k, v) in &t.headers {
            req = req.with_header(k, v);
        }
        if tls {
            let caller_node = &self.nodes[caller as usize];
            let principal = format!(
                "{}/ns/{}/sa/{}",
                self.ca.trust_domain, caller_node.namespace, caller_node.service_account
            );
            req.source_principal = Some(principal);
            req.source_namespace = Some(caller_node.namespace.clone());
        }
        let decision: AuthzDecision = mesh_core::security::evaluate(
            &snap.inbound_authz,
            &req,
            &callee_node.labels,
            &callee_node.namespace,
            mesh_core::security::authz::DEFAULT_ROOT_NAMESPACE,
        );
        matches!(decision.verdict, mesh_core::security::Verdict::Deny)
    }

    /// The application finished computing: make its next call, or respond.
    pub(super) fn on_app_done(&mut self, task: u32, tag: u32) {
        let now = self.now();
        let Some(tk) = self.reqs.tasks.get(task).filter(|t| t.tag == tag) else {
            return;
        };
        let (node, epoch, attempt, agen) = (tk.node, tk.epoch, tk.attempt, tk.attempt_gen);
        let caller = self
            .reqs
            .attempts
            .get(attempt)
            .filter(|a| a.tag == agen)
            .and_then(|a| self.reqs.calls.get(a.call))
            .map(|c| c.caller);
        let n = &self.nodes[node as usize];
        if n.epoch != epoch || !n.up {
            // The instance crashed while working on it: the connection resets.
            self.reqs.tasks.remove(task);
            if let Some(caller) = caller {
                self.send_reset(caller, node, attempt, agen, now);
            }
            return;
        }
        let next = tk.next_call;
        if let Some(&t) = n.app.calls.get(next) {
            if let Some(tk) = self.reqs.tasks.get_mut(task) {
                tk.next_call += 1;
            }
            self.start_call(node, t, Origin::Task { task, tag });
            return;
        }
        let failed = tk.failed;
        self.reqs.tasks.remove(task);
        let Some(caller) = caller else {
            return; // the caller gave up on this try already
        };
        let n = &mut self.nodes[node as usize];
        let error =
            failed || (n.app.error_rate > 0.0 && self.rng.random::<f64>() < n.app.error_rate);
        let status = if error { n.app.error_status } else { 200 };
        if status >= 500 {
            n.counters.errors_served += 1;
        }
        let bytes = RESPONSE_HEADER_BYTES + n.app.response_bytes;
        self.send(
            node,
            caller,
            bytes,
            Ev::Respond {
                attempt,
                tag: agen,
                status,
                reset: false,
            },
            attempt,
            agen,
        );
    }

    /// A fan-out call of a task finished.
    fn on_child_done(&mut self, task: u32, tag: u32, ok: bool) {
        let Some(tk) = self.reqs.tasks.get_mut(task).filter(|t| t.tag == tag) else {
            return;
        };
        tk.failed |= !ok;
        // Continue at once: the app's own work was charged when the request arrived.
        self.on_app_done(task, tag);
    }

    /// A response or reset reaches the caller's sidecar.
    pub(super) fn on_respond(&mut self, attempt: u32, tag: u32, status: u16, reset: bool) {
        if self.reqs.attempts.get(attempt).is_none_or(|a| a.tag != tag) {
            return;
        }
        let (result, outcome) = if reset {
            (AttemptResult::Reset, Outcome::Reset)
        } else {
            (AttemptResult::http(status), Outcome::Http { status })
        };
        self.attempt_done(attempt, result, Some(outcome), reset);
    }

    /// Ends a try: frees its slot, tells outlier detection, asks the retry state
    /// machine what next.
    fn attempt_done(
        &mut self,
        attempt: u32,
        result: AttemptResult,
        outcome: Option<Outcome>,
        conn_lost: bool,
    ) {
        let now = self.now();
        let Some(a) = self.reqs.attempts.remove(attempt) else {
            return;
        };
        let Some(c) = self.reqs.calls.get(a.call).filter(|c| c.tag == a.call_gen) else {
            return;
        };
        let (caller, template) = (c.caller, c.template);
        let new_connection = self.reqs.templates[template as usize].new_connection;
        let n = &mut self.nodes[caller as usize];
        let cluster = &mut n.sidecar.clusters[a.cluster as usize];
        cluster.lb.on_request_end(a.endpoint);
        cluster.waiting.remove(&a.request);
        // A closed connection ends its request with it; otherwise the slot frees and
        // the pool may hand the connection to a waiting request.
        match a.conn.filter(|_| conn_lost || new_connection) {
            Some(conn) => {
                cluster.conns.remove(&conn);
                cluster.pool.on_connection_closed(now, conn);
            }
            None => cluster.pool.on_request_end(now, a.request),
        }
        let events = match (outcome, cluster.outlier.as_mut()) {
            (Some(o), Some(od)) => od.on_response(now, a.endpoint, o),
            _ => Vec::new(),
        };
        // The caller's sidecar handles the response (its bytes, TLS records) and decides
        // on it. Charged to its cores (later work queues behind it); this response is
        // not held back for it, a simplification worth well under a microsecond here.
        let mut cost =
            self.cost(CostKind::OutlierUpdate, 0) + self.cost(CostKind::RetryDecision, 0);
        if self.outbound_proxy() && !conn_lost {
            let response_bytes =
                RESPONSE_HEADER_BYTES + self.nodes[a.node as usize].app.response_bytes;
            cost += self.costs.proxy_bytes_ns(response_bytes);
            if a.tls {
                let t = self.reqs.templates[template as usize].request_bytes + REQUEST_HEADER_BYTES;
                cost += self.costs.tls_record_ns(response_bytes + t);
            }
        }
        if self.outbound_proxy() {
            let _ = self.charge(caller, cost);
        }
        if !events.is_empty() {
            self.outlier_events(caller, a.cluster, events);
            self.schedule_sweep(caller, a.cluster);
        }
        self.drain_pool(caller, a.cluster);
        if let Some((s, v)) = self.nodes[a.node as usize].instance {
            let id = self.topo.version_target[s][v];
            let (status, error) = match result {
                AttemptResult::Response { status, .. } => (Some(status), None),
                AttemptResult::ConnectFailure => (None, Some("connect_failure")),
                AttemptResult::PerTryTimeout => (None, Some("timeout")),
                _ => (None, Some("reset")),
            };
            self.metrics.finished(
                id,
                Done {
                    at_ns: now.as_nanos(),
                    latency_ns: now.as_nanos() - a.start.as_nanos(),
                    status,
                    error,
                    attempts: 1,
                },
            );
        }
        self.after_try(a.call, a.cluster, result);
    }

    fn after_try(&mut self, call: u32, cl: u32, result: AttemptResult) {
        let now = self.now();
        let Some(c) = self.reqs.calls.get_mut(call) else {
            return;
        };
        c.attempt = None;
        let caller = c.caller;
        let budget = self.nodes[caller as usize].sidecar.clusters[cl as usize]
            .pool
            .retry_budget_mut();
        let decision = match c.retry.as_mut() {
            Some(r) => r.on_attempt_result(now, result, budget, &mut self.rng),
            None => Ok(RetryDecision::Complete { attempts: 1 }),
        };
        let decision = decision.unwrap_or(RetryDecision::Complete { attempts: 1 });
        self.apply_retry_decision(call, decision, result);
    }

    fn apply_retry_decision(&mut self, call: u32, decision: RetryDecision, last: AttemptResult) {
        let Some(c) = self.reqs.calls.get(call) else {
            return;
        };
        let (tag, caller) = (c.tag, c.caller);
        match decision {
            RetryDecision::Retry {
                retry_at, attempt, ..
            } => {
                let at = self.nodes[caller as usize].name.clone();
                let host = c.plan.as_ref().map(|p| p.host.clone()).unwrap_or_default();
                self.log(
                    "retry",
                    &at,
                    format!("{host}: try {attempt} after {last:?}"),
                );
                self.sched.schedule_at(retry_at, Ev::Try { call, tag });
            }
            RetryDecision::Complete { attempts } => {
                let (status, error) = final_status(last);
                self.finish_call(call, status, error, attempts);
            }
            RetryDecision::GiveUp { attempts, reason } => {
                if let GiveUpReason::BudgetExhausted(o) = reason {
                    let at = self.nodes[caller as usize].name.clone();
                    self.log(
                        "retry_overflow",
                        &at,
                        format!("retry budget exhausted: {o:?}"),
                    );
                }
                let (status, error) = match reason {
                    GiveUpReason::Timeout { .. } => (Some(504), None),
                    _ => final_status(last),
                };
                self.finish_call(call, status, error, attempts);
            }
        }
    }

    /// Per-try or route timeout.
    pub(super) fn on_call_timer(&mut self, call: u32, tag: u32) {
        let now = self.now();
        let Some(c) = self.reqs.calls.get_mut(call).filter(|c| c.tag == tag) else {
            return;
        };
        if c.timer_at.is_some_and(|t| t > now) {
            return;
        }
        c.timer_at = None;
        let (caller, cl, attempt) = (c.caller, c.cluster, c.attempt);
        let Some(cl) = cl else {
            return;
        };
        let budget = self.nodes[caller as usize].sidecar.clusters[cl as usize]
            .pool
            .retry_budget_mut();
        let c = self.reqs.calls.get_mut(call).expect("checked");
        let decision = c
            .retry
            .as_mut()
            .and_then(|r| r.handle_timeout(now, budget, &mut self.rng));
        let Some(decision) = decision else {
            // Not due yet (another deadline): set the timer again.
            if let Some(at) = c.retry.as_ref().and_then(RetryState::poll_timeout) {
                c.timer_at = Some(at);
                self.sched.schedule_at(at, Ev::CallTimer { call, tag });
            }
            return;
        };
        if let Some(a) = attempt {
            self.abandon_attempt(a, Some(Outcome::Timeout));
        }
        if let Some(c) = self.reqs.calls.get_mut(call) {
            c.attempt = None;
        }
        self.apply_retry_decision(call, decision, AttemptResult::PerTryTimeout);
    }

    /// Gives up on an in-flight try: its stream is reset (HTTP/1.1: its connection is
    /// closed), its slot freed, outlier detection told.
    fn abandon_attempt(&mut self, attempt: u32, outcome: Option<Outcome>) {
        let now = self.now();
        let Some(a) = self.reqs.attempts.remove(attempt) else {
            return;
        };
        let caller = self.reqs.calls.get(a.call).map_or(0, |c| c.caller);
        let cluster = &mut self.nodes[caller as usize].sidecar.clusters[a.cluster as usize];
        cluster.lb.on_request_end(a.endpoint);
        cluster.waiting.remove(&a.request);
        match a.conn {
            Some(conn) => {
                cluster.conns.remove(&conn);
                cluster.pool.on_connection_closed(now, conn);
            }
            None => cluster.pool.on_request_end(now, a.request),
        }
        let events = match (outcome, cluster.outlier.as_mut()) {
            (Some(o), Some(od)) => od.on_response(now, a.endpoint, o),
            _ => Vec::new(),
        };
        if !events.is_empty() {
            self.outlier_events(caller, a.cluster, events);
            self.schedule_sweep(caller, a.cluster);
        }
        self.drain_pool(caller, a.cluster);
        if let Some((s, v)) = self.nodes[a.node as usize].instance {
            let error = if outcome.is_some() {
                "timeout"
            } else {
                "cancelled"
            };
            self.metrics.finished(
                self.topo.version_target[s][v],
                Done {
                    at_ns: now.as_nanos(),
                    latency_ns: now.as_nanos() - a.start.as_nanos(),
                    status: None,
                    error: Some(error),
                    attempts: 1,
                },
            );
        }
    }

    /// The load generator stops waiting for a request.
    pub(super) fn on_client_timeout(&mut self, call: u32, tag: u32) {
        let Some(c) = self.reqs.calls.get_mut(call).filter(|c| c.tag == tag) else {
            return;
        };
        let (attempt, cl, caller) = (c.attempt.take(), c.cluster, c.caller);
        if let (Some(r), Some(cl)) = (c.retry.as_mut(), cl) {
            let budget = self.nodes[caller as usize].sidecar.clusters[cl as usize]
                .pool
                .retry_budget_mut();
            r.cancel(budget);
        }
        if let Some(a) = attempt {
            self.abandon_attempt(a, None);
        }
        let attempts = self.call_attempts(call);
        self.finish_call(call, None, Some("timeout"), attempts);
    }

    /// A call is over: record it, and tell whoever made it.
    fn finish_call(&mut self, call: u32, status: Option<u16>, error: Option<&str>, attempts: u32) {
        let now = self.now();
        let Some(c) = self.reqs.calls.remove(call) else {
            return;
        };
        let t = &self.reqs.templates[c.template as usize];
        let (service, edge) = (self.topo.service_target[t.service], t.edge_target);
        let done = Done {
            at_ns: now.as_nanos(),
            latency_ns: now.as_nanos() - c.start.as_nanos(),
            status,
            error,
            attempts: attempts.max(1),
        };
        self.metrics.finished(service, done);
        self.metrics.finished(edge, done);
        let ok = status.is_some_and(|s| s < 400);
        match c.origin {
            Origin::Workload { w, user } => {
                self.reqs.in_flight -= 1;
                self.metrics.finished(self.topo.client_target, done);
                self.metrics
                    .finished(self.topo.workload_target[w as usize], done);
                if let Some(user) = user {
                    if let scenario::Load::Closed { think_time, .. } =
                        &self.faults.workloads[w as usize].load
                    {
                        let think = super::build::dist(think_time).sample(&mut self.rng);
                        self.sched.schedule_in(think, Ev::UserNext { w, user });
                    }
                }
            }
            Origin::Task { task, tag } => self.on_child_done(task, tag, ok),
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
