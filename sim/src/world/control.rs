//! The control plane and each sidecar's view of the mesh.
//!
//! A config version is an Istio configuration set plus the set of ready instances.
//! The control plane computes snapshots with mesh-core (`compile::snapshot`, once per
//! class of identical proxies: same service, version and namespace) and pushes every
//! new version to every proxy with a propagation delay; while it is down, pushes wait
//! and proxies keep their last good config. A sidecar keeps, per destination cluster
//! it has used, mesh-core's load balancer, outlier detector and connection pool
//! (which owns the retry budget): state survives a config change, and is lost when
//! the instance crashes.

use std::collections::BTreeMap;
use std::sync::Arc;

use mesh_core::compile::{ClusterPolicy, ProxyId, Snapshot, cluster_policy, snapshot};
use mesh_core::config::ConfigSet;
use mesh_core::lb::{LoadBalancer, select_subset};
use mesh_core::outlier::OutlierDetector;
use mesh_core::pool::{ConnectionId, ConnectionPool, Protocol, RequestId};
use mesh_core::{Endpoint, EndpointId, Locality, Time};

use super::{Ev, World};

/// Identifies a proxy class: instances of one (service, version), or a load generator.
type ClassKey = (u32, u32);
const CLIENT_CLASS: ClassKey = (u32::MAX, 0);

/// One configuration version.
#[derive(Debug)]
pub(crate) struct ConfigVersion {
    pub version: u32,
    pub set: Arc<ConfigSet>,
    /// Instances in the registry (ready) at this version, per node.
    pub ready: Vec<bool>,
    snapshots: BTreeMap<ClassKey, Arc<Snapshot>>,
    policies: BTreeMap<(String, Option<String>, usize), Arc<ClusterPolicy>>,
}

/// The control plane.
#[derive(Debug)]
pub(crate) struct ControlPlane {
    pub versions: Vec<ConfigVersion>,
    pub up: bool,
    /// A version is waiting for the control plane to come back.
    pub push_pending: bool,
    pub push_delay: crate::dist::Dist,
    mtls_default: mesh_core::security::MtlsMode,
    mtls_in_use: bool,
}

impl ControlPlane {
    pub fn new(loaded: &scenario::Loaded, sc: &scenario::Scenario, nodes: usize) -> Self {
        use mesh_core::security::MtlsMode;
        let mtls_default = match sc.mesh.mtls {
            scenario::MtlsSetting::Strict => MtlsMode::Strict,
            scenario::MtlsSetting::Permissive => MtlsMode::Permissive,
            scenario::MtlsSetting::Disable => MtlsMode::Disable,
        };
        let set = Arc::new(loaded.config.clone());
        ControlPlane {
            versions: vec![ConfigVersion {
                version: 1,
                set,
                ready: vec![true; nodes],
                snapshots: BTreeMap::new(),
                policies: BTreeMap::new(),
            }],
            up: true,
            push_pending: false,
            push_delay: super::build::dist(&sc.mesh.push_delay),
            mtls_default,
            // Istio issues every sidecar a certificate, whatever the mTLS mode.
            mtls_in_use: sc.mesh.proxies_per_hop >= 2,
        }
    }

    /// Whether any workload certificate is needed.
    pub fn mtls_in_use(&self) -> bool {
        self.mtls_in_use
    }

    pub fn latest(&self) -> &ConfigVersion {
        self.versions.last().expect("there is always a version")
    }

    /// The mesh-wide mTLS mode from the scenario (a PeerAuthentication in the config
    /// overrides it per workload).
    pub fn mtls_default(&self) -> mesh_core::security::MtlsMode {
        self.mtls_default
    }
}

/// A sidecar's view and state. Reset on a crash.
#[derive(Debug, Default)]
pub(crate) struct Sidecar {
    /// The config version applied (0: none yet).
    pub version: u32,
    pub snapshot: Option<Arc<Snapshot>>,
    pub clusters: Vec<Cluster>,
    pub cluster_index: BTreeMap<(String, Option<String>), u32>,
    pub cert: Option<mesh_core::identity::CertLifecycle>,
    /// The root that signed `cert` (0 until a `ca: rotate`).
    pub cert_root: u32,
    /// The roots this sidecar trusts: the bundle the CA returned with its latest
    /// certificate.
    pub trust: super::roots::Bundle,
}

/// One destination cluster (host, subset) as one sidecar sees it.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub service: usize,
    pub policy: Arc<ClusterPolicy>,
    pub lb: LoadBalancer,
    pub outlier: Option<OutlierDetector>,
    pub pool: ConnectionPool,
    /// Connections of the pool: where each goes and whether it is usable.
    pub conns: BTreeMap<ConnectionId, Conn>,
    /// Attempts waiting in the pool for a connection.
    pub waiting: BTreeMap<RequestId, u32>,
    /// An outlier sweep is scheduled at this time.
    pub sweep_at: Option<Time>,
}

/// An upstream connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    /// The callee's epoch when it was opened: a restarted callee has lost it.
    pub epoch: u32,
    pub tls: bool,
    pub ready: bool,
}

impl World {
    /// The snapshot of `node`'s class at `version`, computed once per class.
    fn class_snapshot(&mut self, node: u32, version_ix: usize) -> Arc<Snapshot> {
        let n = &self.nodes[node as usize];
        let class = n
            .instance
            .map_or(CLIENT_CLASS, |(s, v)| (s as u32, v as u32));
        let cv = &self.control.versions[version_ix];
        if let Some(s) = cv.snapshots.get(&class) {
            return s.clone();
        }
        let mut registry = self.topo.registry.clone();
        for (s, service) in registry.services.iter_mut().enumerate() {
            let nodes = &self.topo.service_nodes[s];
            service
                .instances
                .retain(|i| cv.ready[nodes[i.id.0 as usize] as usize]);
        }
        let mut proxy = ProxyId::new(
            n.instance.map_or_else(
                || "client".to_owned(),
                |(s, v)| self.topo.version_names[s][v].replace(':', "-"),
            ),
            n.namespace.clone(),
        );
        proxy.labels = n.labels.clone();
        proxy.service_account = n.service_account.clone();
        let snap = Arc::new(snapshot(&cv.set, &registry, &proxy, u64::from(cv.version)));
        self.control.versions[version_ix]
            .snapshots
            .insert(class, snap.clone());
        snap
    }

    /// Gives `node` the current config at t = 0 (or at restart, when the control plane
    /// is up).
    pub(crate) fn install_initial_config(&mut self, node: u32) {
        let ix = self.control.versions.len() - 1;
        self.apply_version(node, ix);
    }

    /// `node` takes config version `ix`: with a mesh, its sidecar's snapshot and every
    /// cluster it uses; without one, the platform's endpoint lists (as kube-proxy
    /// follows Kubernetes endpoints, with the same propagation delay).
    fn apply_version(&mut self, node: u32, ix: usize) {
        let version = self.control.versions[ix].version;
        if !self.topo.mesh {
            self.nodes[node as usize].sidecar.version = version;
            for c in 0..self.nodes[node as usize].sidecar.clusters.len() {
                let service = self.nodes[node as usize].sidecar.clusters[c].service;
                let endpoints = self.ready_endpoints(service, ix);
                self.nodes[node as usize].sidecar.clusters[c]
                    .lb
                    .update_endpoints(&endpoints);
            }
            return;
        }
        let snap = self.class_snapshot(node, ix);
        let now = self.now();
        let sidecar = &mut self.nodes[node as usize].sidecar;
        sidecar.version = version;
        sidecar.snapshot = Some(snap);
        // Re-resolve every cluster the sidecar already has: new endpoints and policy,
        // keeping load-balancer counters and outlier history for endpoints that stay.
        let keys: Vec<((String, Option<String>), u32)> = sidecar
            .cluster_index
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for ((host, subset), c) in keys {
            let zone = self.nodes[node as usize].zone;
            let (policy, endpoints) =
                self.resolve_cluster(node, ix, &host, subset.as_deref(), zone);
            let cluster = &mut self.nodes[node as usize].sidecar.clusters[c as usize];
            if cluster.policy != policy {
                // New circuit-breaker limits apply from the next admission on.
                cluster.pool.set_limits(policy.pool);
                cluster.lb = LoadBalancer::new(policy.lb.clone(), &endpoints);
                cluster.outlier = policy
                    .outlier
                    .clone()
                    .map(|p| OutlierDetector::new(p, endpoints.iter().map(|e| e.id), now));
                cluster.policy = policy;
            } else {
                cluster.lb.update_endpoints(&endpoints);
                if let Some(od) = &mut cluster.outlier {
                    let _ = od.update_endpoints(now, endpoints.iter().map(|e| e.id));
                }
            }
        }
        let clusters = self.nodes[node as usize].sidecar.clusters.len() as u32;
        for c in 0..clusters {
            self.schedule_sweep(node, c);
        }
    }

    /// The policy and endpoints of cluster (`host`, `subset`) for `node` at version `ix`.
    fn resolve_cluster(
        &mut self,
        node: u32,
        ix: usize,
        host: &str,
        subset: Option<&str>,
        zone: usize,
    ) -> (Arc<ClusterPolicy>, Vec<Endpoint>) {
        let key = (host.to_owned(), subset.map(str::to_owned), zone);
        let cv = &self.control.versions[ix];
        let policy = match cv.policies.get(&key) {
            Some(p) => p.clone(),
            None => {
                let locality = Locality {
                    region: self.topo_region(zone),
                    zone: self.topo.zone_names[zone].clone(),
                    subzone: String::new(),
                };
                let p = Arc::new(cluster_policy(&cv.set, host, subset, Some(&locality)));
                self.control.versions[ix].policies.insert(key, p.clone());
                p
            }
        };
        let snap = self.nodes[node as usize].sidecar.snapshot.clone();
        let all: Vec<Endpoint> = snap
            .as_ref()
            .and_then(|s| s.cluster(host))
            .map(<[Endpoint]>::to_vec)
            .unwrap_or_default();
        let endpoints = if subset.is_some() {
            select_subset(&all, &policy.subset_labels)
        } else {
            all
        };
        (policy, endpoints)
    }

    fn topo_region(&self, zone: usize) -> String {
        self.topo.zone_regions[zone].clone()
    }

    /// The cluster index for (`host`, `subset`) in `node`'s sidecar, created on first use.
    /// `None` when the host is not a service of the topology.
    pub(crate) fn cluster_for(
        &mut self,
        node: u32,
        host: &str,
        subset: Option<&str>,
    ) -> Option<u32> {
        let key = (host.to_owned(), subset.map(str::to_owned));
        if let Some(&c) = self.nodes[node as usize].sidecar.cluster_index.get(&key) {
            return Some(c);
        }
        let service = *self.topo.by_fqdn.get(host)?;
        let ix = self.version_index(self.nodes[node as usize].sidecar.version);
        let zone = self.nodes[node as usize].zone;
        let (policy, endpoints) = if self.topo.mesh {
            self.resolve_cluster(node, ix, host, subset, zone)
        } else {
            // No mesh: the platform's plain round robin over ready instances.
            let endpoints = self.ready_endpoints(service, ix);
            let mut p = ClusterPolicy::istio_default(host, None);
            p.lb = mesh_core::lb::LbPolicy::new(mesh_core::lb::LbAlgorithm::RoundRobin);
            (Arc::new(p), endpoints)
        };
        let now = self.now();
        let cluster = Cluster {
            service,
            lb: LoadBalancer::new(policy.lb.clone(), &endpoints),
            outlier: policy
                .outlier
                .clone()
                .map(|p| OutlierDetector::new(p, endpoints.iter().map(|e| e.id), now)),
            pool: ConnectionPool::new(policy.pool, Protocol::Http1),
            policy,
            conns: BTreeMap::new(),
            waiting: BTreeMap::new(),
            sweep_at: None,
        };
        let sidecar = &mut self.nodes[node as usize].sidecar;
        let c = sidecar.clusters.len() as u32;
        sidecar.clusters.push(cluster);
        sidecar.cluster_index.insert(key, c);
        self.schedule_sweep(node, c);
        Some(c)
    }

    fn ready_endpoints(&self, service: usize, ix: usize) -> Vec<Endpoint> {
        let rs = &self.topo.registry.services[service];
        let ready = &self.control.versions[ix].ready;
        rs.instances
            .iter()
            .filter(|i| ready[self.topo.service_nodes[service][i.id.0 as usize] as usize])
            .map(|i| i.endpoint(&rs.namespace))
            .collect()
    }

    fn version_index(&self, version: u32) -> usize {
        self.control
            .versions
            .iter()
            .position(|v| v.version == version)
            .unwrap_or(self.control.versions.len() - 1)
    }

    /// Schedules the next outlier sweep of a cluster, if it has a detector.
    pub(crate) fn schedule_sweep(&mut self, node: u32, c: u32) {
        let epoch = self.nodes[node as usize].epoch;
        let cluster = &mut self.nodes[node as usize].sidecar.clusters[c as usize];
        let Some(at) = cluster
            .outlier
            .as_ref()
            .and_then(OutlierDetector::poll_timeout)
        else {
            return;
        };
        if cluster.sweep_at.is_some_and(|s| s <= at) {
            return;
        }
        cluster.sweep_at = Some(at);
        self.sched.schedule_at(
            at,
            Ev::Sweep {
                node,
                cluster: c,
                epoch,
            },
        );
    }

    pub(super) fn on_sweep(&mut self, node: u32, c: u32, epoch: u32) {
        let now = self.now();
        let n = &mut self.nodes[node as usize];
        if n.epoch != epoch || !n.up {
            return;
        }
        let Some(cluster) = n.sidecar.clusters.get_mut(c as usize) else {
            return;
        };
        if cluster.sweep_at.is_some_and(|s| s > now) {
            return;
        }
        cluster.sweep_at = None;
        let events = cluster
            .outlier
            .as_mut()
            .map(|od| od.handle_timeout(now))
            .unwrap_or_default();
        self.outlier_events(node, c, events);
        self.schedule_sweep(node, c);
    }

    /// Logs outlier-detection events of a cluster and counts ejections per instance.
    pub(crate) fn outlier_events(
        &mut self,
        node: u32,
        c: u32,
        events: Vec<mesh_core::outlier::OutlierEvent>,
    ) {
        use mesh_core::outlier::OutlierEvent as E;
        let cluster = &self.nodes[node as usize].sidecar.clusters[c as usize];
        let (service, host) = (cluster.service, cluster.policy.host.clone());
        let at = self.nodes[node as usize].name.clone();
        let name_of = |w: &World, id: EndpointId| {
            w.topo.node_of(service, id).map_or_else(
                || format!("endpoint {}", id.0),
                |n| w.nodes[n as usize].name.clone(),
            )
        };
        for e in events {
            if let E::Ejected { endpoint, .. } = &e
                && let Some(n) = self.topo.node_of(service, *endpoint)
            {
                self.nodes[n as usize].counters.ejections += 1;
            }
            let (kind, detail) = e.describe(&host, |id| name_of(self, id));
            self.log(kind, &at, detail);
        }
    }

    // === pushes ===

    /// A new config version: `set` (or the current set) with the current ready
    /// instances. Pushed now if the control plane is up, else when it returns.
    pub(crate) fn new_version(&mut self, set: Option<Arc<ConfigSet>>, why: &str) {
        let latest = self.control.latest();
        let set = set.unwrap_or_else(|| latest.set.clone());
        // Ready: up, and (with a mesh) its sidecar has config — a pod whose proxy has
        // none is not ready and gets no traffic.
        let mesh = self.topo.mesh;
        let ready = self
            .nodes
            .iter()
            .map(|n| n.up && n.instance.is_some() && (!mesh || n.sidecar.snapshot.is_some()))
            .collect();
        let version = latest.version + 1;
        self.control.versions.push(ConfigVersion {
            version,
            set,
            ready,
            snapshots: BTreeMap::new(),
            policies: BTreeMap::new(),
        });
        // Versions no sidecar uses any more are dropped, to bound memory.
        let in_use: std::collections::BTreeSet<u32> =
            self.nodes.iter().map(|n| n.sidecar.version).collect();
        let keep_from = self.control.versions.len() - 1;
        let mut i = 0;
        self.control.versions.retain(|v| {
            let keep = i >= keep_from || in_use.contains(&v.version);
            i += 1;
            keep
        });
        self.log(
            "config_version",
            "control-plane",
            format!("version {version}: {why}"),
        );
        if self.control.up {
            self.push_latest();
        } else {
            self.control.push_pending = true;
        }
    }

    /// Sends the latest version to every running proxy, each after its own
    /// propagation delay.
    pub(crate) fn push_latest(&mut self) {
        self.control.push_pending = false;
        let version = self.control.latest().version;
        self.log(
            "config_push",
            "control-plane",
            format!("version {version} to every proxy"),
        );
        let now = self.now();
        for node in 0..self.nodes.len() as u32 {
            if !self.nodes[node as usize].up {
                continue;
            }
            let delay = self.control.push_delay.sample(&mut self.rng);
            self.sched.schedule_at(
                now + std::time::Duration::from_nanos(delay),
                Ev::ConfigArrive { node, version },
            );
        }
    }

    pub(super) fn on_config_arrive(&mut self, node: u32, version: u32) {
        let n = &self.nodes[node as usize];
        if !n.up || n.sidecar.version >= version {
            return;
        }
        let Some(ix) = self
            .control
            .versions
            .iter()
            .position(|v| v.version == version)
        else {
            return;
        };
        let first_config = self.nodes[node as usize].sidecar.snapshot.is_none();
        self.apply_version(node, ix);
        self.metrics.count_event("config_applied");
        if self.topo.mesh && first_config && self.nodes[node as usize].instance.is_some() {
            // A restarted instance got its first config: it becomes ready.
            let name = self.nodes[node as usize].name.clone();
            self.new_version(None, &format!("{name} ready"));
        }
        if self
            .nodes
            .iter()
            .all(|n| !n.up || n.sidecar.version >= version)
        {
            self.log(
                "config_converged",
                "control-plane",
                format!("every running proxy has version {version}"),
            );
        }
    }
}
