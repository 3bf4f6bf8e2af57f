//! Building the world from a loaded scenario: one node per instance (named
//! `service-version-zone-N`), one load-generator node per workload entry, the
//! registry the control plane serves, the network, and the initial timeline.

use std::collections::BTreeMap;

use mesh_core::compile::{Instance, Registry, RegistryService};
use mesh_core::{EndpointId, Time};
use scenario::{Load, Scenario};

use super::{Ev, World, control, faults, identity, request};
use crate::cpu::CpuQueue;
use crate::dist::Dist;
use crate::net::{LinkModel, Network};

/// Cores of a load-generator node: enough that the client is never the bottleneck.
const CLIENT_CORES: u32 = 64;

/// Why a scenario cannot be simulated (beyond what validation catches).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Invalid(String),
}

/// What an instance's application does, in simulator terms.
#[derive(Debug, Clone)]
pub(crate) struct AppModel {
    pub service_time: Dist,
    pub error_rate: f64,
    pub error_status: u16,
    pub response_bytes: u64,
    /// Request templates of its fan-out calls, in order.
    pub calls: Vec<u32>,
}

/// Per-node counters for the result.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub requests_served: u64,
    pub errors_served: u64,
    pub ejections: u64,
    pub certs_issued: u64,
    pub cert_expiries: u64,
}

/// An instance with its sidecar, or a load generator.
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    /// `(service, version)` indices; `None` for a load generator.
    pub instance: Option<(usize, usize)>,
    pub zone: usize,
    pub cores: u32,
    pub up: bool,
    /// Bumped on every crash: events of an older epoch are stale.
    pub epoch: u32,
    pub cpu: CpuQueue,
    pub app: AppModel,
    pub labels: BTreeMap<String, String>,
    pub namespace: String,
    pub service_account: String,
    /// Local clock = true time + offset + drift × true time.
    pub clock_offset_ns: i64,
    pub drift_ppm: f64,
    pub sidecar: control::Sidecar,
    pub counters: Counters,
}

impl Node {
    /// The node's own clock reading at true time `now`.
    pub fn local_time(&self, now: Time) -> Time {
        let t = now.as_nanos() as f64;
        let local = t + self.clock_offset_ns as f64 + t * self.drift_ppm * 1e-6;
        Time(local.max(0.0) as u64)
    }

    /// The true time at which this node's clock reads `local`.
    pub fn true_time(&self, local: Time) -> Time {
        let l = local.as_nanos() as f64 - self.clock_offset_ns as f64;
        Time((l / (1.0 + self.drift_ppm * 1e-6)).max(0.0) as u64)
    }
}

/// Topology indexes.
#[derive(Debug)]
pub(crate) struct Topo {
    /// Per service: its nodes, indexed by endpoint id.
    pub service_nodes: Vec<Vec<u32>>,
    /// FQDN → service index.
    pub by_fqdn: BTreeMap<String, usize>,
    /// Service names (for metric targets).
    pub service_names: Vec<String>,
    /// `service:version` per (service, version).
    pub version_names: Vec<Vec<String>>,
    pub zone_names: Vec<String>,
    /// The region of each zone.
    pub zone_regions: Vec<String>,
    /// Per workload entry: its load-generator node.
    pub workload_nodes: Vec<u32>,
    pub mesh: bool,
    /// 1: client sidecar only; 2: both sides.
    pub proxies_per_hop: u8,
    pub registry: Registry,
    /// Metric target ids: per service, per (service, version), the load generators
    /// together, per workload entry.
    pub service_target: Vec<usize>,
    pub version_target: Vec<Vec<usize>>,
    pub client_target: usize,
    pub workload_target: Vec<usize>,
}

impl Topo {
    /// The node of endpoint `id` of service `s`.
    pub fn node_of(&self, s: usize, id: EndpointId) -> Option<u32> {
        self.service_nodes.get(s)?.get(id.0 as usize).copied()
    }
}

pub(crate) fn app_model(app: &scenario::App, calls: Vec<u32>) -> AppModel {
    AppModel {
        service_time: dist(&app.service_time),
        error_rate: app.error_rate,
        error_status: app.error_status,
        response_bytes: app.response_bytes,
        calls,
    }
}

fn link_model(link: &scenario::Link) -> LinkModel {
    let mut m = LinkModel::new(dist(&link.latency)).with_loss(link.loss);
    if let Some(bps) = link.bandwidth_bps {
        m = m.with_bandwidth_bps(bps);
    }
    m
}

/// The simulator's distribution for a scenario's.
pub(crate) fn dist(d: &scenario::Dist) -> Dist {
    Dist::from_scenario(d)
}

impl World {
    pub(crate) fn build(
        loaded: &scenario::Loaded,
        options: &super::SimOptions,
    ) -> Result<World, BuildError> {
        let sc: &Scenario = &loaded.scenario;
        let seed = options.seed.unwrap_or(sc.seed);
        let end_ns = options
            .duration_ns
            .map_or(sc.duration_ns, |d| d.min(sc.duration_ns));
        let zone_index: BTreeMap<&str, usize> = sc
            .topology
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.name.as_str(), i))
            .collect();
        let zone_of = |name: &str| {
            zone_index
                .get(name)
                .copied()
                .ok_or_else(|| BuildError::Invalid(format!("unknown zone `{name}`")))
        };
        let mesh = sc.mesh.proxies_per_hop > 0;
        let mut reqs = request::Requests::default();

        // Instances, service by service, version by version, zone by zone.
        let mut nodes = Vec::new();
        let mut service_nodes = Vec::new();
        let mut registry = Registry::default();
        let mut by_fqdn = BTreeMap::new();
        for (s, svc) in sc.topology.services.iter().enumerate() {
            by_fqdn.insert(svc.fqdn().to_ascii_lowercase(), s);
        }
        for (s, svc) in sc.topology.services.iter().enumerate() {
            let mut rs = RegistryService::new(&svc.name, &svc.namespace).port(svc.port);
            let mut ids = Vec::new();
            for (v, ver) in svc.versions.iter().enumerate() {
                let calls: Vec<u32> = ver
                    .app
                    .calls
                    .iter()
                    .map(|c| {
                        let target = sc
                            .topology
                            .services
                            .iter()
                            .position(|t| t.name == c.service);
                        let target = target.ok_or_else(|| {
                            BuildError::Invalid(format!("unknown service `{}`", c.service))
                        })?;
                        Ok(reqs.template(request::Template {
                            service: target,
                            method: "GET".to_owned(),
                            path: c.path.clone(),
                            headers: c.headers.clone(),
                            request_bytes: 0,
                            new_connection: false,
                            caller_name: svc.name.clone(),
                            edge_target: 0,
                            authority: sc.topology.services[target].fqdn().to_ascii_lowercase(),
                        }))
                    })
                    .collect::<Result<_, BuildError>>()?;
                let app = app_model(&ver.app, calls);
                for p in &ver.placements {
                    let zone = zone_of(&p.zone)?;
                    let region = sc.topology.zones[zone].region.clone();
                    for k in 0..p.count {
                        let name = format!("{}-{}-{}-{k}", svc.name, ver.name, p.zone);
                        ids.push(nodes.len() as u32);
                        rs.push(Instance {
                            labels: ver.labels.clone(),
                            ..Instance::new(name.clone())
                                .service_account(&svc.service_account)
                                .locality(region.clone(), p.zone.clone())
                        });
                        nodes.push(Node {
                            name,
                            instance: Some((s, v)),
                            zone,
                            cores: svc.cores,
                            up: true,
                            epoch: 0,
                            cpu: CpuQueue::new(svc.cores),
                            app: app.clone(),
                            labels: ver.labels.clone(),
                            namespace: svc.namespace.clone(),
                            service_account: svc.service_account.clone(),
                            clock_offset_ns: 0,
                            drift_ppm: 0.0,
                            sidecar: control::Sidecar::default(),
                            counters: Counters::default(),
                        });
                    }
                }
            }
            service_nodes.push(ids);
            registry.services.push(rs);
        }

        // One load generator per workload entry.
        let mut workload_nodes = Vec::new();
        for (i, w) in sc.workload.iter().enumerate() {
            let zone = zone_of(&w.from_zone)?;
            let target = sc
                .topology
                .services
                .iter()
                .position(|t| t.name == w.target)
                .ok_or_else(|| BuildError::Invalid(format!("unknown service `{}`", w.target)))?;
            let t = reqs.template(request::Template {
                service: target,
                method: w.method.clone(),
                path: w.path.clone(),
                headers: w.headers.clone(),
                request_bytes: w.request_bytes,
                new_connection: w.new_connection_per_request,
                caller_name: "client".to_owned(),
                edge_target: 0,
                authority: sc.topology.services[target].fqdn().to_ascii_lowercase(),
            });
            reqs.workload_templates.push(t);
            let labels: BTreeMap<String, String> = [("app".to_owned(), "client".to_owned())].into();
            workload_nodes.push(nodes.len() as u32);
            nodes.push(Node {
                name: format!("client-{i}"),
                instance: None,
                zone,
                cores: CLIENT_CORES,
                up: true,
                epoch: 0,
                cpu: CpuQueue::new(CLIENT_CORES),
                app: app_model(&scenario::App::default(), Vec::new()),
                labels,
                namespace: "default".to_owned(),
                service_account: "client".to_owned(),
                clock_offset_ns: 0,
                drift_ppm: 0.0,
                sidecar: control::Sidecar::default(),
                counters: Counters::default(),
            });
        }

        // The network: default links, then per-pair overrides.
        let zones = sc.topology.zones.len();
        let node_zones: Vec<u32> = nodes.iter().map(|n| n.zone as u32).collect();
        let mut net = Network::new(
            zones,
            link_model(&sc.network.intra_zone),
            link_model(&sc.network.inter_zone),
            node_zones,
        )
        .map_err(|e| BuildError::Invalid(format!("network: {e}")))?;
        for o in &sc.network.links {
            let (a, b) = (zone_of(&o.between.0)?, zone_of(&o.between.1)?);
            net.set_pair_link(a as u32, b as u32, link_model(&o.link))
                .map_err(|e| {
                    BuildError::Invalid(format!(
                        "network link {}-{}: {e}",
                        o.between.0, o.between.1
                    ))
                })?;
        }

        let topo = Topo {
            service_nodes,
            by_fqdn,
            service_names: sc
                .topology
                .services
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            version_names: sc
                .topology
                .services
                .iter()
                .map(|s| {
                    s.versions
                        .iter()
                        .map(|v| format!("{}:{}", s.name, v.name))
                        .collect()
                })
                .collect(),
            zone_names: sc.topology.zones.iter().map(|z| z.name.clone()).collect(),
            zone_regions: sc.topology.zones.iter().map(|z| z.region.clone()).collect(),
            workload_nodes,
            mesh,
            proxies_per_hop: sc.mesh.proxies_per_hop,
            registry,
            service_target: Vec::new(),
            version_target: Vec::new(),
            client_target: 0,
            workload_target: Vec::new(),
        };
        let mut topo = topo;

        let mut m = results::recorder::RunRecorder::new(
            scenario::windows_needed(&sc.assertions),
            options.events_per_kind,
        );
        topo.client_target = m.declare("client", true);
        topo.service_target = topo
            .service_names
            .iter()
            .map(|n| m.declare(n, true))
            .collect();
        topo.version_target = topo
            .version_names
            .iter()
            .map(|vs| vs.iter().map(|v| m.declare(v, false)).collect())
            .collect();
        topo.workload_target = (0..sc.workload.len())
            .map(|i| m.declare(&request::workload_target_name(i), false))
            .collect();
        for t in &mut reqs.templates {
            let edge = format!("{}->{}", t.caller_name, topo.service_names[t.service]);
            t.edge_target = m.declare(&edge, false);
        }

        let control = control::ControlPlane::new(loaded, sc, nodes.len());
        let ca = identity::Ca::new(sc, mesh && control.mtls_in_use());
        let mut world = World {
            sched: crate::engine::Scheduler::new(),
            rng: crate::rng::seeded(seed),
            costs: options.cost_table.clone(),
            net,
            nodes,
            topo,
            control,
            ca,
            reqs,
            metrics: m,
            faults: faults::Faults::new(sc, loaded),
            end_ns,
            scenario_end_ns: sc.duration_ns,
            cpu_at_end: None,
            seed,
        };
        world.start(sc);
        Ok(world)
    }

    /// The initial timeline: config and certificates in place at t = 0 (the mesh was
    /// running before the scenario starts), workload arrivals, faults.
    fn start(&mut self, sc: &Scenario) {
        for node in 0..self.nodes.len() as u32 {
            self.install_initial_config(node);
            self.bootstrap_identity(node);
        }
        for (w, wl) in sc.workload.iter().enumerate() {
            self.reqs.next_arrival_ns.push(wl.start_ns as f64);
            self.reqs.client_deadlines.push(Default::default());
            match &wl.load {
                Load::Open(_) => self
                    .sched
                    .schedule_at(Time(wl.start_ns), Ev::Arrival { w: w as u32 }),
                Load::Closed { users, .. } => {
                    for user in 0..*users {
                        // Stagger users over the first millisecond so they do not
                        // arrive in lockstep.
                        let offset = u64::from(user) * 1_000_000 / u64::from((*users).max(1));
                        self.sched.schedule_at(
                            Time(wl.start_ns + offset),
                            Ev::UserNext { w: w as u32, user },
                        );
                    }
                }
            }
        }
        self.sched.schedule_at(Time(self.end_ns), Ev::RunEnd);
        for (i, f) in sc.faults.iter().enumerate() {
            if f.at_ns < self.end_ns {
                self.sched
                    .schedule_at(Time(f.at_ns), Ev::FaultStart { i: i as u32 });
                if let Some(d) = f.for_ns {
                    let end = f.at_ns.saturating_add(d);
                    if end < self.end_ns {
                        self.sched
                            .schedule_at(Time(end), Ev::FaultEnd { i: i as u32 });
                    }
                }
            } else {
                self.faults.warnings.push(format!(
                    "fault at line {} is after the end of the run: not applied",
                    f.line
                ));
            }
        }
    }
}
