//! Workload identity in the simulator: a CA that signs with latency and CPU (and can
//! be down), and one mesh-core `CertLifecycle` per sidecar deciding when to request,
//! renew and back off. Each sidecar reads its own clock (offset and drift), so clock
//! skew makes certificates look not-yet-valid or expired to their peers.

use std::time::Duration;

use mesh_core::Time;
use mesh_core::identity::{CertLifecycle, IdentityEvent, LifecycleConfig};

use super::{Ev, World};
use crate::cpu::CpuQueue;
use crate::dist::Dist;

/// Time for a CSR to fail when the CA is down (connection refused).
const CA_REFUSED_NS: u64 = 1_000_000;
/// CPU cores of the CA.
const CA_CORES: u32 = 2;

/// The certificate authority.
#[derive(Debug)]
pub(crate) struct Ca {
    pub up: bool,
    /// Whether sidecars hold certificates at all (a mesh with sidecars on both sides).
    pub enabled: bool,
    pub trust_domain: String,
    pub ttl_ns: u64,
    issue_latency: Dist,
    cpu: CpuQueue,
}

impl Ca {
    pub fn new(sc: &scenario::Scenario, enabled: bool) -> Self {
        Ca {
            up: true,
            enabled,
            trust_domain: sc.mesh.trust_domain.clone(),
            ttl_ns: sc.mesh.cert_ttl_ns,
            issue_latency: super::build::dist(&sc.mesh.issue_latency),
            cpu: CpuQueue::new(CA_CORES),
        }
    }
}

impl World {
    fn lifecycle(&self) -> CertLifecycle {
        let config = LifecycleConfig {
            ttl: Duration::from_nanos(self.ca.ttl_ns),
            // A request must not outlive the certificate it asks for.
            request_timeout: Duration::from_nanos(
                (self.ca.ttl_ns / 4).clamp(1_000_000, 10_000_000_000),
            ),
            backoff_base: Duration::from_nanos(
                (self.ca.ttl_ns / 60).clamp(1_000_000, 1_000_000_000),
            ),
            ..LifecycleConfig::default()
        };
        CertLifecycle::new(config).expect("the lifecycle config is derived from a validated TTL")
    }

    /// At t = 0 every sidecar already holds a certificate issued at 0 (the mesh was
    /// running before the scenario); renewals then follow the lifecycle's schedule.
    pub(crate) fn bootstrap_identity(&mut self, node: u32) {
        if !self.ca.enabled {
            return;
        }
        let mut cert = self.lifecycle();
        let now = self.now();
        let local = self.nodes[node as usize].local_time(now);
        let _ = cert.handle_timeout(local, &mut self.rng);
        let events = cert.on_issued(
            local,
            now,
            now + Duration::from_nanos(self.ca.ttl_ns),
            &mut self.rng,
        );
        self.nodes[node as usize].sidecar.cert = Some(cert);
        self.nodes[node as usize].counters.certs_issued += 1;
        self.metrics.count_event("cert_issued");
        let _ = events;
        self.schedule_cert_timer(node);
    }

    /// A restarted sidecar asks the CA for a certificate, as a fresh pod does.
    pub(crate) fn request_identity(&mut self, node: u32) {
        if !self.ca.enabled {
            return;
        }
        self.nodes[node as usize].sidecar.cert = Some(self.lifecycle());
        self.on_cert_timer(node, self.nodes[node as usize].epoch);
    }

    pub(crate) fn schedule_cert_timer(&mut self, node: u32) {
        let n = &self.nodes[node as usize];
        let Some(local) = n
            .sidecar
            .cert
            .as_ref()
            .and_then(CertLifecycle::poll_timeout)
        else {
            return;
        };
        let at = n.true_time(local).max(self.now());
        let epoch = n.epoch;
        self.sched.schedule_at(at, Ev::CertTimer { node, epoch });
    }

    pub(super) fn on_cert_timer(&mut self, node: u32, epoch: u32) {
        let now = self.now();
        let n = &mut self.nodes[node as usize];
        if n.epoch != epoch || !n.up {
            return;
        }
        let local = n.local_time(now);
        let Some(cert) = n.sidecar.cert.as_mut() else {
            return;
        };
        if cert.poll_timeout().is_some_and(|t| t > local) {
            // An earlier timer, superseded: the current one is scheduled.
            return;
        }
        let events = cert.handle_timeout(local, &mut self.rng);
        self.identity_events(node, events);
        self.schedule_cert_timer(node);
    }

    pub(super) fn on_cert_answer(&mut self, node: u32, epoch: u32, issued: Option<(u64, u64)>) {
        let now = self.now();
        let n = &mut self.nodes[node as usize];
        if n.epoch != epoch || !n.up {
            return;
        }
        let local = n.local_time(now);
        let Some(cert) = n.sidecar.cert.as_mut() else {
            return;
        };
        let events = match issued {
            Some((nb, na)) => cert.on_issued(local, Time(nb), Time(na), &mut self.rng),
            None => cert.on_request_failed(local, "CA unreachable", &mut self.rng),
        };
        self.identity_events(node, events);
        self.schedule_cert_timer(node);
    }

    fn identity_events(&mut self, node: u32, events: Vec<IdentityEvent>) {
        let now = self.now();
        let name = self.nodes[node as usize].name.clone();
        let epoch = self.nodes[node as usize].epoch;
        for e in events {
            match e {
                IdentityEvent::RequestCertificate {
                    attempt, reason, ..
                } => {
                    self.metrics.count_event("csr");
                    let answer = if self.ca.up {
                        let rtt = self.net.rtt_sample(now, node, node, &mut self.rng);
                        // Signing queues on the CA's cores in the order CSRs are sent (submitted
                        // now, so the queue stays first-come first-served); the request's
                        // trip to the CA is added after.
                        let signed = self.ca.cpu.submit(now, self.costs.ca_sign_ns);
                        let latency = self.ca.issue_latency.sample(&mut self.rng);
                        let at = signed + Duration::from_nanos(rtt / 2 + latency);
                        let not_after = at + Duration::from_nanos(self.ca.ttl_ns);
                        (
                            at + Duration::from_nanos(rtt / 2),
                            Some((at.as_nanos(), not_after.as_nanos())),
                        )
                    } else {
                        self.log(
                            "cert_request_failed",
                            &name,
                            format!("attempt {attempt} ({reason:?}): CA unreachable"),
                        );
                        (now + Duration::from_nanos(CA_REFUSED_NS), None)
                    };
                    self.sched.schedule_at(
                        answer.0,
                        Ev::CertAnswer {
                            node,
                            epoch,
                            issued: answer.1,
                        },
                    );
                }
                IdentityEvent::Issued { not_after, .. } => {
                    self.nodes[node as usize].counters.certs_issued += 1;
                    self.log(
                        "cert_issued",
                        &name,
                        format!("valid until {} ns", not_after.as_nanos()),
                    );
                }
                IdentityEvent::RequestFailed {
                    attempt,
                    backoff_ns,
                    cause,
                    ..
                } => {
                    self.log(
                        "cert_renewal_failed",
                        &name,
                        format!(
                            "attempt {attempt}: {cause:?}; next try in {} ms",
                            backoff_ns / 1_000_000
                        ),
                    );
                }
                IdentityEvent::Expired { not_after, .. } => {
                    self.nodes[node as usize].counters.cert_expiries += 1;
                    self.log(
                        "cert_expired",
                        &name,
                        format!("expired at {} ns before renewal", not_after.as_nanos()),
                    );
                }
                _ => {}
            }
        }
    }

    /// Why an mTLS handshake from `client` to `server` at true time `now` fails, if it
    /// does: each side checks the other's certificate against its own clock.
    pub(crate) fn cert_problem(&self, client: u32, server: u32, now: Time) -> Option<String> {
        let check = |holder: u32, verifier: u32, role: &str| -> Option<String> {
            let h = &self.nodes[holder as usize];
            let v = &self.nodes[verifier as usize];
            let Some(cert) = h.sidecar.cert.as_ref().and_then(CertLifecycle::certificate) else {
                return Some(format!("{role} {} has no certificate", h.name));
            };
            let clock = v.local_time(now);
            if clock >= cert.not_after {
                Some(format!(
                    "{role} certificate of {} expired ({} checks it)",
                    h.name, v.name
                ))
            } else if clock < cert.not_before {
                Some(format!(
                    "{role} certificate of {} not yet valid on {}'s clock",
                    h.name, v.name
                ))
            } else {
                None
            }
        };
        check(client, server, "client").or_else(|| check(server, client, "server"))
    }
}
