//! Sending: open-loop and closed-loop arrivals, the outbound sidecar's route
//! decision, and each try: load-balancer pick, pool admission, dispatch.

use super::*;

impl World {
    pub(in crate::world) fn on_arrival(&mut self, w: u32) {
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

    pub(in crate::world) fn on_user_next(&mut self, w: u32, user: u32) {
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
    pub(super) fn start_call(&mut self, caller: u32, template: u32, origin: Origin) {
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
            let plan = Plan::direct(host, None);
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
            overflowed: false,
        });
        if let Origin::Workload { w, .. } = origin {
            // Every request of an entry has the same timeout, so deadlines come in
            // start order: one queue per entry and one pending event at its head,
            // instead of an event per request in the scheduler's heap.
            let deadline = now.as_nanos() + self.faults.workloads[w as usize].timeout_ns;
            let queue = &mut self.reqs.client_deadlines[w as usize];
            if queue.is_empty() {
                self.sched
                    .schedule_at(Time(deadline), Ev::ClientTimeouts { w });
            }
            queue.push_back((deadline, call, tag));
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
    pub(super) fn route_decision(
        &mut self,
        caller: u32,
        template: u32,
        bytes: u64,
    ) -> (Option<Plan>, Option<LocalAnswer>, u64) {
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
        // mesh-core has drawn the split, the fault and the mirror percentages.
        if let Some(plan) = decision.outcome.upstream() {
            return (Some(plan), None, work);
        }
        let status = match decision.outcome {
            RouteOutcome::Redirect(r) => r.status,
            RouteOutcome::DirectResponse { status, .. } => status,
            _ => 404,
        };
        (None, Some((Some(status), "")), work)
    }

    pub(in crate::world) fn on_route(&mut self, call: u32, tag: u32) {
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
            if let Some(p) = self.reqs.calls.get_mut(call).and_then(|c| c.plan.as_mut()) {
                p.delay = None;
            }
            return;
        }
        self.on_try(call, tag);
    }

    pub(in crate::world) fn on_try(&mut self, call: u32, tag: u32) {
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
        let (caller, template) = (c.caller, c.template);
        let mut mirrors = Vec::new();
        if c.retry.is_none() {
            // The policy moves into the retry state machine on the first try.
            let policy = std::mem::replace(&mut plan.retry, RetryPolicy::disabled());
            c.retry = Some(RetryState::start(policy, now, plan.timeout));
            // Envoy shadows a request once, when its router first forwards it: after
            // an injected delay, never after an abort, never again on a retry.
            mirrors = std::mem::take(&mut plan.mirrors);
        }
        let route_timeout = plan.timeout;
        for m in mirrors {
            self.send_mirror(caller, template, m.host, m.subset, route_timeout);
        }
        let c = self.reqs.calls.get_mut(call).expect("checked above");
        let plan = c.plan.as_mut().expect("routed calls have a plan");
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
        if let Some(d) = deadline.filter(|&d| c.timer_at != Some(d)) {
            {
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

    pub(super) fn call_attempts(&self, call: u32) -> u32 {
        self.reqs
            .calls
            .get(call)
            .and_then(|c| c.retry.as_ref())
            .map_or(0, RetryState::attempts)
    }

    /// Carries out what the pool asks for.
    pub(super) fn drain_pool(&mut self, node: u32, cl: u32) {
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
                            FailReason::Overflow(o) => {
                                let call = self.reqs.attempts.get(a).map(|t| t.call);
                                if let Some(c) = call.and_then(|c| self.reqs.calls.get_mut(c)) {
                                    c.overflowed = true;
                                }
                                let at = self.nodes[node as usize].name.clone();
                                let host = self.nodes[node as usize].sidecar.clusters[cl as usize]
                                    .policy
                                    .host
                                    .clone();
                                self.log(
                                    "breaker_overflow",
                                    &at,
                                    format!("{host}: {:?} (limit {})", o.reason, o.limit),
                                );
                                (AttemptResult::http(503), None)
                            }
                        };
                        self.attempt_done(a, result, outcome, false);
                    }
                }
            }
        }
    }
}
