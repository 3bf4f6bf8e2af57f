//! Workload identity in the simulator: a CA that signs with latency and CPU (and can
//! be down, and can rotate its root), and one mesh-core `CertLifecycle` per sidecar
//! deciding when to request, renew and back off. Each sidecar reads its own clock
//! (offset and drift), so clock skew makes certificates look not-yet-valid or expired
//! to their peers.
//!
//! Roots ([`super::roots`]): every certificate records the root that signed it, and
//! every sidecar trusts the bundle the CA returned with its latest certificate. A
//! handshake accepts a peer certificate only if its root is in the verifier's bundle,
//! so a root rotation whose overlap is too short for the renewals fails handshakes
//! until they catch up.

use std::time::Duration;

use mesh_core::Time;
use mesh_core::identity::{CertLifecycle, IdentityEvent, LifecycleConfig};

use super::roots::{Bundle, Change, Roots};
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
    /// The root that signs and the bundle handed out, through rotations.
    roots: Roots,
    /// When the pending `Ev::RootTimer` is due (an older one is stale).
    root_timer_at: Option<Time>,
}

/// A certificate the CA signed, as its answer carries it. It is valid from
/// `not_before_ns` for the CA's TTL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Issued {
    pub not_before_ns: u64,
    /// The root that signed it.
    pub root: u32,
    /// The trust bundle returned with it.
    pub bundle: Bundle,
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
            roots: Roots::default(),
            root_timer_at: None,
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
        let sidecar = &mut self.nodes[node as usize].sidecar;
        sidecar.cert = Some(cert);
        sidecar.cert_root = self.ca.roots.signer();
        sidecar.trust = self.ca.roots.bundle();
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

    pub(super) fn on_cert_answer(&mut self, node: u32, epoch: u32, issued: Option<Issued>) {
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
            Some(c) => {
                let not_after = c.not_before_ns.saturating_add(self.ca.ttl_ns);
                let events =
                    cert.on_issued(local, Time(c.not_before_ns), Time(not_after), &mut self.rng);
                // The certificate is held only if the lifecycle took it (a late or
                // expired answer is ignored or counts as a failure).
                if events
                    .iter()
                    .any(|e| matches!(e, IdentityEvent::Issued { .. }))
                {
                    n.sidecar.cert_root = c.root;
                    n.sidecar.trust = c.bundle;
                }
                events
            }
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
                        // Signed under the root, and with the bundle, in force when the
                        // CSR is sent.
                        let issued = Issued {
                            not_before_ns: at.as_nanos(),
                            root: self.ca.roots.signer(),
                            bundle: self.ca.roots.bundle(),
                        };
                        (at + Duration::from_nanos(rtt / 2), Some(issued))
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
    /// does: each side checks the other's certificate against its own clock and its
    /// own trust bundle.
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
            } else if !v.sidecar.trust.trusts(h.sidecar.cert_root) {
                Some(format!(
                    "{role} certificate of {} is signed by root #{}, not trusted by {} (its bundle: {})",
                    h.name, h.sidecar.cert_root, v.name, v.sidecar.trust
                ))
            } else {
                None
            }
        };
        check(client, server, "client").or_else(|| check(server, client, "server"))
    }
}

// === root rotation ===

impl World {
    /// Fault `i` (`ca: rotate`) starts: a new root, trusted at once, signing from
    /// `overlap / 2`, the old root dropped at `overlap`.
    pub(super) fn start_rotation(&mut self, i: usize, overlap_ns: u64) {
        let now = self.now();
        // A rotation ending at this very instant ends first.
        self.on_root_changes();
        match self.ca.roots.rotate(now, overlap_ns) {
            Ok(t) => {
                let old = self.ca.roots.signer();
                let new = self.ca.roots.bundle().newest;
                let show =
                    |t: Time| results::units::format_duration(Duration::from_nanos(t.as_nanos()));
                let detail = format!(
                    "root #{new} generated: bundle {}, root #{old} still signs; root #{new} signs from {}, root #{old} dropped at {} (overlap {})",
                    self.ca.roots.bundle(),
                    show(t.switch_at),
                    show(t.drop_old_at),
                    results::units::format_duration(Duration::from_nanos(overlap_ns)),
                );
                self.log("root_rotation_started", "ca", detail);
                self.schedule_root_timer();
            }
            Err(busy) => {
                // Validation refuses it; a scenario built in code may not have been.
                let line = self.faults.list[i].line;
                self.faults.note_not_applied(format!(
                    "fault at line {line}: a root rotation is already under way until {} ns (the CA rotates one root at a time): not applied",
                    busy.drop_old_at.as_nanos()
                ));
            }
        }
    }

    /// The rotation's next phase is due.
    pub(super) fn on_root_timer(&mut self) {
        if self.ca.root_timer_at != Some(self.now()) {
            return; // superseded by a timer scheduled since
        }
        self.ca.root_timer_at = None;
        self.on_root_changes();
        self.schedule_root_timer();
    }

    /// Applies and logs the phase changes due now.
    fn on_root_changes(&mut self) {
        let now = self.now();
        for change in self.ca.roots.handle_timeout(now) {
            let bundle = self.ca.roots.bundle();
            match change {
                Change::SigningSwitched => {
                    let detail = format!(
                        "root #{} signs from now on; bundle {bundle}",
                        self.ca.roots.signer()
                    );
                    self.log("root_signing_switched", "ca", detail);
                }
                Change::OldRootDropped => {
                    let old = bundle.newest.saturating_sub(1);
                    let detail = format!("root #{old} dropped from the bundle: bundle {bundle}");
                    self.log("root_retired", "ca", detail);
                }
            }
        }
    }

    /// Schedules the rotation's next phase, unless it is already scheduled or falls
    /// at or after the end of the run (as a fault's end does).
    fn schedule_root_timer(&mut self) {
        let Some(at) = self.ca.roots.poll_timeout() else {
            return;
        };
        let at = at.max(self.now());
        if self.ca.root_timer_at == Some(at) || at.as_nanos() >= self.end_ns {
            return;
        }
        self.ca.root_timer_at = Some(at);
        self.sched.schedule_at(at, Ev::RootTimer);
    }
}
