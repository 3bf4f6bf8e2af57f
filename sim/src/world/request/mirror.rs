//! Mirroring (VirtualService `mirror` / `mirrors`): the caller's sidecar sends a
//! shadow copy of a request to each mirror destination, fire-and-forget, as Envoy's
//! request shadowing does.
//!
//! mesh-core's route decision has drawn the `mirrorPercentage`s already. A shadow is a
//! call of its own ([`Origin::Mirror`]) that takes the normal try path to the mirror's
//! cluster — endpoint pick, pool, connection, network, the callee's inbound sidecar,
//! its application and the application's own fan-out calls — because the point of a
//! mirror is that the mirror target does the work. But nobody waits for it: it is
//! never retried (it keeps the route's timeout, as Envoy's shadows do), its response
//! is discarded, and the original request's latency and outcome do not depend on it.
//! It does load the caller's sidecar, the network and the callee.
//!
//! Where it is counted: the mirror target receives the traffic, so a shadow is
//! recorded under the target's service, its `caller->target` edge and the version it
//! reached (per try), like any request to it; it adds nothing to `client` or the
//! workloads. Each shadow sent is counted as a `mirror` event.

use super::*;

impl World {
    /// The caller's sidecar sends a shadow of a request of `template` to `host`
    /// (`subset`), with the original route's `timeout`.
    pub(super) fn send_mirror(
        &mut self,
        caller: u32,
        template: u32,
        host: String,
        subset: Option<String>,
        timeout: Option<Duration>,
    ) {
        let now = self.now();
        // A mirror host outside the topology has no cluster: Envoy drops the shadow.
        let Some(&service) = self.topo.by_fqdn.get(&host) else {
            return;
        };
        let template = self.mirror_template(template, service);
        let t = &self.reqs.templates[template as usize];
        let (edge, bytes) = (t.edge_target, REQUEST_HEADER_BYTES + t.request_bytes);
        self.metrics.count_event("mirror");
        self.metrics.started(self.topo.service_target[service]);
        self.metrics.started(edge);
        let tag = self.reqs.next_tag();
        let call = self.reqs.calls.insert(Call {
            tag,
            caller,
            template,
            origin: Origin::Mirror,
            start: now,
            plan: Some(Plan {
                timeout,
                ..Plan::direct(host, subset)
            }),
            local: None,
            retry: None,
            cluster: None,
            attempt: None,
            timer_at: None,
            overflowed: false,
        });
        // Copying the request onto a second upstream stream is a request's worth of
        // proxy work; the shadow leaves when it is done (the original does not wait).
        let work = self.cost(CostKind::ProxyRequest, bytes);
        let at = self.charge(caller, work);
        self.sched.schedule_at(at, Ev::Try { call, tag });
    }

    /// The template of a shadow of `template` sent to `service`: the same request,
    /// addressed to the mirror service and recorded on the edge `caller->service`.
    fn mirror_template(&mut self, template: u32, service: usize) -> u32 {
        if let Some(&t) = self.reqs.mirror_templates.get(&(template, service)) {
            return t;
        }
        let mut t = self.reqs.templates[template as usize].clone();
        let edge = format!("{}->{}", t.caller_name, self.topo.service_names[service]);
        t.edge_target = self.metrics.declare(&edge, false);
        t.authority = self.topo.registry.services[service]
            .fqdn()
            .to_ascii_lowercase();
        t.service = service;
        let id = self.reqs.template(t);
        self.reqs.mirror_templates.insert((template, service), id);
        id
    }
}
