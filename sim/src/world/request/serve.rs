//! Serving: the inbound sidecar (authorization) and the application (service time,
//! fan-out calls, errors).

use super::*;

impl World {
    /// A request reaches the callee: inbound sidecar (authorization), then the app.
    pub(in crate::world) fn on_arrive(&mut self, attempt: u32, tag: u32) {
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
    pub(super) fn authorize(&mut self, caller: u32, callee: u32, call: u32, tls: bool) -> bool {
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
    pub(in crate::world) fn on_app_done(&mut self, task: u32, tag: u32) {
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
        );
    }

    /// A fan-out call of a task finished.
    pub(super) fn on_child_done(&mut self, task: u32, tag: u32, ok: bool) {
        let Some(tk) = self.reqs.tasks.get_mut(task).filter(|t| t.tag == tag) else {
            return;
        };
        tk.failed |= !ok;
        // Continue at once: the app's own work was charged when the request arrived.
        self.on_app_done(task, tag);
    }
}
