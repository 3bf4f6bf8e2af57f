//! What real mode starts: every instance (application + sidecar), one client sidecar
//! per zone the workload comes from, the control plane, and the fault-injecting
//! links between sidecars — with their ports, and the registry the control plane
//! serves.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;

use scenario::{FaultKind, Scenario};

/// Below this, a link latency is not emulated: the relay's timer resolution (about a
/// millisecond) and loopback's own latency are of that order.
pub const MIN_EMULATED_LATENCY_NS: u64 = 1_000_000;

/// One instance: an application and (with a mesh) its sidecar.
#[derive(Debug, Clone)]
pub struct Inst {
    /// `<service>-<version>-<zone>-<k>`, as the simulator names it.
    pub name: String,
    pub service: String,
    pub namespace: String,
    pub service_account: String,
    pub version: String,
    pub zone: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub app_port: u16,
    /// Sidecar ports (0 without a sidecar).
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub admin_port: u16,
}

impl Inst {
    /// Where callers reach it: its sidecar's inbound listener, or the app itself.
    pub fn serving_port(&self, proxies_per_hop: u8) -> u16 {
        if proxies_per_hop >= 2 {
            self.inbound_port
        } else {
            self.app_port
        }
    }
}

/// The load generator's sidecar in one zone.
#[derive(Debug, Clone)]
pub struct ClientSidecar {
    /// `client-<i>`, `i` the first workload from this zone (the simulator's name for
    /// that workload's client).
    pub name: String,
    pub zone: String,
    pub region: String,
    pub outbound_port: u16,
    pub admin_port: u16,
}

/// A fault-injecting relay from one caller (a service, or `client`) to one instance.
#[derive(Debug, Clone)]
pub struct LinkPlan {
    /// The calling service, or `client`.
    pub source: String,
    /// The zones the caller runs in.
    pub source_zones: Vec<String>,
    /// Index into [`Plan::insts`].
    pub dest: usize,
    pub port: u16,
    /// Base one-way latency from the scenario's network (0: none emulated).
    pub base_latency_ns: u64,
    /// The network's bandwidth cap, bits per second, each direction.
    pub bandwidth_bps: Option<u64>,
    /// The network's loss, applied as a reset probability per chunk (real TCP
    /// retransmits what the simulator models as RTO delays; a relay can only reset).
    pub loss: f64,
}

/// Everything real mode starts.
#[derive(Debug, Clone)]
pub struct Plan {
    pub insts: Vec<Inst>,
    pub clients: Vec<ClientSidecar>,
    pub links: Vec<LinkPlan>,
    pub control_port: u16,
    /// The CA's API port (used when sidecars get certificates).
    pub ca_port: u16,
    pub proxies_per_hop: u8,
    /// Things the plan could not reproduce exactly.
    pub warnings: Vec<String>,
}

/// Free ports on 127.0.0.1, held until [`Ports::release`] so no two are the same.
#[derive(Debug, Default)]
pub struct Ports {
    held: Vec<TcpListener>,
}

impl Ports {
    pub fn take(&mut self) -> std::io::Result<u16> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        self.held.push(l);
        Ok(port)
    }

    /// Frees every port for the processes that will bind them.
    pub fn release(self) {}
}

/// Does `name` (a zone or a service, as fault `a`/`b` fields name them) cover the
/// endpoint of a link that is `service` running in `zones`?
fn covers(name: &str, service: &str, zones: &[String]) -> bool {
    name == service || zones.iter().any(|z| z == name)
}

impl Plan {
    pub fn build(sc: &Scenario, ports: &mut Ports) -> std::io::Result<Plan> {
        let proxies_per_hop = sc.mesh.proxies_per_hop;
        let mut warnings = Vec::new();
        let mut insts = Vec::new();
        for svc in &sc.topology.services {
            for ver in &svc.versions {
                for p in &ver.placements {
                    let region = sc
                        .zone(&p.zone)
                        .map(|z| z.region.clone())
                        .unwrap_or_default();
                    for k in 0..p.count {
                        let sidecar = proxies_per_hop > 0;
                        insts.push(Inst {
                            name: format!("{}-{}-{}-{k}", svc.name, ver.name, p.zone),
                            service: svc.name.clone(),
                            namespace: svc.namespace.clone(),
                            service_account: svc.service_account.clone(),
                            version: ver.name.clone(),
                            zone: p.zone.clone(),
                            region: region.clone(),
                            labels: ver.labels.clone(),
                            app_port: ports.take()?,
                            outbound_port: if sidecar { ports.take()? } else { 0 },
                            inbound_port: if proxies_per_hop >= 2 {
                                ports.take()?
                            } else {
                                0
                            },
                            admin_port: if sidecar { ports.take()? } else { 0 },
                        });
                    }
                }
            }
        }
        let mut client_zones: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, w) in sc.workload.iter().enumerate() {
            client_zones.entry(w.from_zone.as_str()).or_insert(i);
        }
        let mut clients = Vec::new();
        if proxies_per_hop > 0 {
            for (z, first) in client_zones {
                clients.push(ClientSidecar {
                    name: format!("client-{first}"),
                    zone: z.to_owned(),
                    region: sc.zone(z).map(|z| z.region.clone()).unwrap_or_default(),
                    outbound_port: ports.take()?,
                    admin_port: ports.take()?,
                });
            }
        }

        // Who calls whom: (caller, its zones) → called services.
        let mut callers: BTreeMap<String, (Vec<String>, BTreeSet<String>)> = BTreeMap::new();
        for w in &sc.workload {
            let e = callers.entry("client".to_owned()).or_default();
            if !e.0.contains(&w.from_zone) {
                e.0.push(w.from_zone.clone());
            }
            e.1.insert(w.target.clone());
        }
        for svc in &sc.topology.services {
            let zones: Vec<String> = svc
                .versions
                .iter()
                .flat_map(|v| v.placements.iter().map(|p| p.zone.clone()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for v in &svc.versions {
                for c in &v.app.calls {
                    let e = callers.entry(svc.name.clone()).or_default();
                    e.0.clone_from(&zones);
                    e.1.insert(c.service.clone());
                }
            }
        }
        // Link faults name pairs of zones or services.
        let link_faults: Vec<(&str, &str)> = sc
            .faults
            .iter()
            .filter_map(|f| match &f.kind {
                FaultKind::Partition { a, b, .. }
                | FaultKind::LinkLatency { a, b, .. }
                | FaultKind::LinkLoss { a, b, .. }
                | FaultKind::Hold { a, b } => Some((a.as_str(), b.as_str())),
                _ => None,
            })
            .collect();
        let mut links = Vec::new();
        if proxies_per_hop > 0 {
            for (source, (zones, callees)) in &callers {
                for (i, inst) in insts.iter().enumerate() {
                    if !callees.contains(&inst.service) {
                        continue;
                    }
                    let dest_zones = std::slice::from_ref(&inst.zone);
                    let faulted = link_faults.iter().any(|(a, b)| {
                        (covers(a, source, zones) && covers(b, &inst.service, dest_zones))
                            || (covers(b, source, zones) && covers(a, &inst.service, dest_zones))
                    });
                    let latencies: BTreeSet<u64> = zones
                        .iter()
                        .map(|z| {
                            sim::dist::Dist::from_scenario(&sc.network.link(z, &inst.zone).latency)
                                .mean_ns() as u64
                        })
                        .collect();
                    if latencies.len() > 1 {
                        warnings.push(format!(
                            "{source} runs in several zones whose latency to {} differs; real \
                             mode relays all of {source}'s calls to it with the first zone's latency",
                            inst.name
                        ));
                    }
                    let base = latencies.first().copied().unwrap_or(0);
                    let base = if base >= MIN_EMULATED_LATENCY_NS {
                        base
                    } else {
                        0
                    };
                    // Bandwidth and loss of the first zone's link, like the latency.
                    let first = zones.first().map(|z| sc.network.link(z, &inst.zone));
                    let bandwidth_bps = first.and_then(|l| l.bandwidth_bps);
                    let loss = first.map_or(0.0, |l| l.loss);
                    if faulted || base > 0 || bandwidth_bps.is_some() || loss > 0.0 {
                        links.push(LinkPlan {
                            source: source.clone(),
                            source_zones: zones.clone(),
                            dest: i,
                            port: ports.take()?,
                            base_latency_ns: base,
                            bandwidth_bps,
                            loss,
                        });
                    }
                }
            }
        }
        let control_port = ports.take()?;
        let ca_port = ports.take()?;
        Ok(Plan {
            insts,
            clients,
            links,
            control_port,
            ca_port,
            proxies_per_hop,
            warnings,
        })
    }

    /// The links a fault between `a` and `b` acts on, with whether the link runs
    /// from `a` to `b` (else from `b` to `a`).
    pub fn links_between(&self, a: &str, b: &str) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        for (i, l) in self.links.iter().enumerate() {
            let dest = &self.insts[l.dest];
            let dz = std::slice::from_ref(&dest.zone);
            if covers(a, &l.source, &l.source_zones) && covers(b, &dest.service, dz) {
                out.push((i, true));
            } else if covers(b, &l.source, &l.source_zones) && covers(a, &dest.service, dz) {
                out.push((i, false));
            }
        }
        out
    }

    /// The registry file the control plane serves (JSON, see `meshrig proxy --help`):
    /// every instance at the port callers reach it on, with the relay addresses of
    /// the callers that go through a link (`via`).
    pub fn registry_json(&self, sc: &Scenario) -> serde_json::Value {
        let services: Vec<serde_json::Value> = sc
            .topology
            .services
            .iter()
            .map(|svc| {
                let instances: Vec<serde_json::Value> = self
                    .insts
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| i.service == svc.name)
                    .map(|(idx, i)| {
                        let via: BTreeMap<&str, String> = self
                            .links
                            .iter()
                            .filter(|l| l.dest == idx)
                            .map(|l| (l.source.as_str(), format!("127.0.0.1:{}", l.port)))
                            .collect();
                        let mut v = serde_json::json!({
                            "address": format!("127.0.0.1:{}", i.serving_port(self.proxies_per_hop)),
                            "labels": i.labels,
                            "zone": i.zone,
                            "region": i.region,
                            "service_account": i.service_account,
                        });
                        if !via.is_empty() {
                            v["via"] = serde_json::json!(via);
                        }
                        v
                    })
                    .collect();
                serde_json::json!({
                    "name": svc.name,
                    "namespace": svc.namespace,
                    "instances": instances,
                })
            })
            .collect();
        serde_json::json!({ "services": services })
    }
}
