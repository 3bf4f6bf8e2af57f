//! Outcomes: responses and resets back at the caller, outlier detection, the retry
//! state machine, timeouts, and recording a finished call.

use super::*;

impl World {
    /// A response or reset reaches the caller's sidecar.
    pub(in crate::world) fn on_respond(
        &mut self,
        attempt: u32,
        tag: u32,
        status: u16,
        reset: bool,
    ) {
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
    pub(super) fn attempt_done(
        &mut self,
        attempt: u32,
        result: AttemptResult,
        outcome: Option<Outcome>,
        conn_lost: bool,
    ) {
        let Some(a) = self.reqs.attempts.remove(attempt) else {
            return;
        };
        let Some(c) = self.reqs.calls.get(a.call).filter(|c| c.tag == a.call_gen) else {
            return;
        };
        let (caller, template) = (c.caller, c.template);
        let new_connection = self.reqs.templates[template as usize].new_connection;
        let (status, error) = match result {
            AttemptResult::Response { status, .. } => (Some(status), None),
            AttemptResult::ConnectFailure => (None, Some("connect_failure")),
            AttemptResult::PerTryTimeout => (None, Some("timeout")),
            _ => (None, Some("reset")),
        };
        // The caller's sidecar handles the response (its bytes, TLS records) and decides
        // on it. Charged to its cores (later work queues behind it); this response is
        // not held back for it, a simplification worth well under a microsecond here.
        if self.outbound_proxy() {
            let mut cost =
                self.cost(CostKind::OutlierUpdate, 0) + self.cost(CostKind::RetryDecision, 0);
            if !conn_lost {
                let response_bytes =
                    RESPONSE_HEADER_BYTES + self.nodes[a.node as usize].app.response_bytes;
                cost += self.costs.proxy_bytes_ns(response_bytes);
                if a.tls {
                    let t =
                        self.reqs.templates[template as usize].request_bytes + REQUEST_HEADER_BYTES;
                    cost += self.costs.tls_record_ns(response_bytes + t);
                }
            }
            let _ = self.charge(caller, cost);
        }
        self.release_try(
            caller,
            &a,
            conn_lost || new_connection,
            outcome,
            status,
            error,
        );
        self.after_try(a.call, a.cluster, result);
    }

    /// Frees a finished or abandoned try in its caller's cluster — load-balancer
    /// count, pool slot (closing its connection when `close`: a closed connection ends
    /// its request with it; otherwise the pool may hand the connection to a waiting
    /// request), outlier detection — and records it on the version it reached.
    fn release_try(
        &mut self,
        caller: u32,
        a: &Attempt,
        close: bool,
        outcome: Option<Outcome>,
        status: Option<u16>,
        error: Option<&str>,
    ) {
        let now = self.now();
        let cluster = &mut self.nodes[caller as usize].sidecar.clusters[a.cluster as usize];
        cluster.lb.on_request_end(a.endpoint);
        cluster.waiting.remove(&a.request);
        match a.conn.filter(|_| close) {
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
            self.metrics.finished(
                self.topo.version_target[s][v],
                Done {
                    at_ns: now.as_nanos(),
                    latency_ns: now.as_nanos() - a.start.as_nanos(),
                    start_ns: a.start.as_nanos(),
                    status,
                    error,
                    attempts: 1,
                },
            );
        }
    }

    pub(super) fn after_try(&mut self, call: u32, cl: u32, result: AttemptResult) {
        let now = self.now();
        let Some(c) = self.reqs.calls.get_mut(call) else {
            return;
        };
        c.attempt = None;
        if c.overflowed {
            let attempts = c.retry.as_ref().map_or(1, RetryState::attempts);
            self.finish_call(call, Some(503), Some("overflow"), attempts);
            return;
        }
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

    pub(super) fn apply_retry_decision(
        &mut self,
        call: u32,
        decision: RetryDecision,
        last: AttemptResult,
    ) {
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
    pub(in crate::world) fn on_call_timer(&mut self, call: u32, tag: u32) {
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
    pub(super) fn abandon_attempt(&mut self, attempt: u32, outcome: Option<Outcome>) {
        let Some(a) = self.reqs.attempts.remove(attempt) else {
            return;
        };
        let caller = self.reqs.calls.get(a.call).map_or(0, |c| c.caller);
        let error = if outcome.is_some() {
            "timeout"
        } else {
            "cancelled"
        };
        self.release_try(caller, &a, true, outcome, None, Some(error));
    }

    /// Client deadlines of workload entry `w` that are due: those requests time out.
    pub(in crate::world) fn on_client_timeouts(&mut self, w: u32) {
        let now = self.now().as_nanos();
        while let Some(&(at, call, tag)) = self.reqs.client_deadlines[w as usize].front() {
            if at > now {
                self.sched.schedule_at(Time(at), Ev::ClientTimeouts { w });
                return;
            }
            self.reqs.client_deadlines[w as usize].pop_front();
            self.on_client_timeout(call, tag);
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
    pub(super) fn finish_call(
        &mut self,
        call: u32,
        status: Option<u16>,
        error: Option<&str>,
        attempts: u32,
    ) {
        let now = self.now();
        let Some(mut c) = self.reqs.calls.remove(call) else {
            return;
        };
        // A call ended by the sidecar itself (no healthy upstream, overflow, ...)
        // after a retry was granted still holds that retry in the budget: give it back.
        if let (Some(r), Some(cl)) = (c.retry.as_mut(), c.cluster)
            && let Some(cluster) = self.nodes[c.caller as usize]
                .sidecar
                .clusters
                .get_mut(cl as usize)
        {
            r.cancel(cluster.pool.retry_budget_mut());
        }
        let t = &self.reqs.templates[c.template as usize];
        let (service, edge) = (self.topo.service_target[t.service], t.edge_target);
        let done = Done {
            at_ns: now.as_nanos(),
            latency_ns: now.as_nanos() - c.start.as_nanos(),
            start_ns: c.start.as_nanos(),
            status,
            error,
            // Tries sent upstream: 0 when the sidecar answered itself.
            attempts,
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
                if let (Some(user), scenario::Load::Closed { think_time, .. }) =
                    (user, &self.faults.workloads[w as usize].load)
                {
                    {
                        let think = crate::world::build::dist(think_time).sample(&mut self.rng);
                        self.sched.schedule_in(think, Ev::UserNext { w, user });
                    }
                }
            }
            Origin::Task { task, tag } => self.on_child_done(task, tag, ok),
            // A shadow's response is discarded: it was recorded above, and that is all.
            Origin::Mirror => {}
        }
    }
}
