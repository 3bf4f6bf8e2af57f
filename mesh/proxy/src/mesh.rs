//! The proxy's view of the mesh and its per-cluster policy state.
//!
//! [`Mesh`] holds the configuration in service — a [`Config`]: the Istio set, the
//! proxy's [`Snapshot`] and its version — and, per destination cluster (host, subset)
//! it has used, mesh-core's [`LoadBalancer`], [`OutlierDetector`] and [`RetryBudget`]
//! — as the simulator's sidecar does (`sim/src/world/control.rs`). Each cluster sits
//! behind its own mutex, held only for a decision, never across an `.await`. Lock
//! order: cluster, then RNG.
//!
//! # Hot updates
//!
//! [`Mesh::update`] swaps the whole [`Config`] at once (`RwLock<Arc<Config>>`, the
//! write lock held only for the pointer swap). A request takes the config once
//! ([`Mesh::config`]) and finishes on it, clusters included ([`Mesh::cluster_in`]),
//! while new requests see the new one: no request fails because of a switch. The
//! state of a cluster whose policy and endpoints are unchanged is carried over (its
//! ejections, load-balancer state and retry budget survive the update); any other
//! cluster is rebuilt from the new config on first use.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use mesh_core::compile::{ClusterPolicy, Snapshot, cluster_policy, peer_authentications};
use mesh_core::config::ConfigSet;
use mesh_core::lb::{LoadBalancer, select_subset};
use mesh_core::outlier::{OutlierDetector, OutlierEvent};
use mesh_core::retry::RetryBudget;
use mesh_core::security::authz::DEFAULT_ROOT_NAMESPACE;
use mesh_core::security::{PeerAuthentication, resolve_mtls_mode};
use mesh_core::{Endpoint, EndpointId, Locality, Time};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::tls::{self, Tls};
use crate::upstream::Upstreams;

/// A destination cluster: host (FQDN) and subset.
type ClusterKey = (String, Option<String>);

/// Everything the listeners share.
#[derive(Debug)]
pub struct Mesh {
    pub clock: Clock,
    /// The proxy's locality, for locality-aware load balancing.
    pub locality: Locality,
    pub upstreams: Upstreams,
    pub metrics: Metrics,
    /// The sidecar's TLS: its identity, and how it connects to each upstream.
    pub tls: Tls,
    rng: Mutex<SmallRng>,
    config: RwLock<Arc<Config>>,
}

/// One configuration version and the cluster state built for it.
#[derive(Debug)]
pub struct Config {
    /// The control plane's version (1 for a static configuration).
    pub version: u64,
    pub set: Arc<ConfigSet>,
    pub snapshot: Arc<Snapshot>,
    /// The PeerAuthentications of `set`, normalized: each endpoint's inbound mTLS
    /// mode for auto mTLS.
    pub peer_authentications: Arc<Vec<PeerAuthentication>>,
    clusters: Mutex<BTreeMap<ClusterKey, Arc<Mutex<Cluster>>>>,
}

/// One destination cluster's policy state.
#[derive(Debug)]
pub struct Cluster {
    pub policy: ClusterPolicy,
    pub lb: LoadBalancer,
    pub outlier: Option<OutlierDetector>,
    pub budget: RetryBudget,
    endpoints: Vec<Endpoint>,
    addresses: BTreeMap<EndpointId, String>,
    peer_authentications: Arc<Vec<PeerAuthentication>>,
    /// How to connect to each endpoint (TLS mode, credentials), decided on first use.
    upstream_tls: BTreeMap<EndpointId, Arc<tls::Upstream>>,
}

/// What an update kept and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateStats {
    /// Clusters whose state was carried over.
    pub kept: usize,
    /// Clusters dropped (rebuilt on first use): policy or endpoints changed, or gone.
    pub rebuilt: usize,
}

impl Mesh {
    /// A mesh view for `snapshot` (its version is the snapshot's), drawing from an
    /// RNG seeded with `seed`.
    pub fn new(set: ConfigSet, snapshot: Snapshot, locality: Locality, seed: u64) -> Self {
        Mesh {
            clock: Clock::start(),
            locality,
            upstreams: Upstreams::default(),
            metrics: Metrics::default(),
            tls: Tls::none(),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            config: RwLock::new(Arc::new(Config::new(set, snapshot))),
        }
    }

    /// The sidecar's TLS (default [`Tls::none`]: plaintext, no identity).
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// The configuration in service. Take it once per request and finish on it.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The snapshot in service (shorthand for `config().snapshot`).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config().snapshot.clone()
    }

    /// Puts `set` and `snapshot` (at `snapshot.version`) in service. Clusters whose
    /// policy and endpoints are the same under the new config keep their state.
    /// Requests that already took the old config finish on it.
    pub fn update(&self, set: ConfigSet, snapshot: Snapshot) -> UpdateStats {
        let next = Config::new(set, snapshot);
        let old = self.config();
        let mut stats = UpdateStats::default();
        {
            let old_clusters = lock_map(&old.clusters).clone();
            let mut carried = lock_map(&next.clusters);
            for (key, cluster) in old_clusters {
                let same = next
                    .build_parts(&key.0, key.1.as_deref(), &self.locality)
                    .is_some_and(|(policy, endpoints)| {
                        let c = lock(&cluster);
                        c.policy == policy && c.endpoints == endpoints
                    });
                if same {
                    // PeerAuthentications may have changed: TLS is decided anew.
                    {
                        let mut c = lock(&cluster);
                        c.peer_authentications = next.peer_authentications.clone();
                        c.upstream_tls.clear();
                    }
                    carried.insert(key, cluster);
                    stats.kept += 1;
                } else {
                    stats.rebuilt += 1;
                }
            }
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        stats
    }

    /// Now, on the proxy's monotonic clock.
    pub fn now(&self) -> Time {
        self.clock.now()
    }

    /// The seeded RNG every draw comes from.
    pub fn rng(&self) -> MutexGuard<'_, SmallRng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cluster (`host`, `subset`) of the config in service, created on first
    /// use; `None` when the snapshot has no such host.
    pub fn cluster(&self, host: &str, subset: Option<&str>) -> Option<Arc<Mutex<Cluster>>> {
        self.cluster_in(&self.config(), host, subset)
    }

    /// The cluster (`host`, `subset`) of `config` (the one the request started
    /// with), created on first use; `None` when its snapshot has no such host.
    pub fn cluster_in(
        &self,
        config: &Config,
        host: &str,
        subset: Option<&str>,
    ) -> Option<Arc<Mutex<Cluster>>> {
        let key = (host.to_owned(), subset.map(str::to_owned));
        let mut clusters = lock_map(&config.clusters);
        if let Some(c) = clusters.get(&key) {
            return Some(c.clone());
        }
        let (policy, endpoints) = config.build_parts(host, subset, &self.locality)?;
        let now = self.now();
        let cluster = Cluster {
            lb: LoadBalancer::new(policy.lb.clone(), &endpoints),
            outlier: policy
                .outlier
                .clone()
                .map(|p| OutlierDetector::new(p, endpoints.iter().map(|e| e.id), now)),
            budget: RetryBudget::new(policy.retry_limit),
            addresses: endpoints
                .iter()
                .map(|e| (e.id, e.address.clone()))
                .collect(),
            endpoints,
            policy,
            peer_authentications: config.peer_authentications.clone(),
            upstream_tls: BTreeMap::new(),
        };
        let cluster = Arc::new(Mutex::new(cluster));
        clusters.insert(key, cluster.clone());
        Some(cluster)
    }
}

impl Config {
    fn new(set: ConfigSet, snapshot: Snapshot) -> Self {
        Config {
            peer_authentications: Arc::new(peer_authentications(&set)),
            version: snapshot.version,
            set: Arc::new(set),
            snapshot: Arc::new(snapshot),
            clusters: Mutex::new(BTreeMap::new()),
        }
    }

    /// The policy and endpoints of (`host`, `subset`) under this config.
    fn build_parts(
        &self,
        host: &str,
        subset: Option<&str>,
        locality: &Locality,
    ) -> Option<(ClusterPolicy, Vec<Endpoint>)> {
        let all = self.snapshot.cluster(host)?;
        let policy = cluster_policy(&self.set, host, subset, Some(locality));
        let endpoints = if subset.is_some() {
            select_subset(all, &policy.subset_labels)
        } else {
            all.to_vec()
        };
        Some((policy, endpoints))
    }

    /// How many clusters have state under this config.
    pub fn cluster_count(&self) -> usize {
        lock_map(&self.clusters).len()
    }
}

impl Cluster {
    /// Runs the outlier detector's sweep if it is due (ejection intervals end,
    /// success-rate checks), lazily on the next request instead of on a timer.
    pub fn sweep(&mut self, now: Time) {
        if let Some(od) = &mut self.outlier
            && od.poll_timeout().is_some_and(|at| at <= now)
        {
            let events = od.handle_timeout(now);
            self.report(&events);
        }
    }

    /// Logs outlier events (ejections, unejections, suppressed ejections, panic
    /// mode) as JSON lines on stderr, with wall-clock time and the endpoint's address:
    /// they are rare, they are what an operator looks for, and `meshrig run --mode
    /// real` reads them into the result's event log.
    pub fn report(&self, events: &[OutlierEvent]) {
        use std::io::Write as _;
        if events.is_empty() {
            return;
        }
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut err = std::io::stderr().lock();
        for e in events {
            let (kind, message) = e.describe(&self.policy.host, |id| {
                self.address(id)
                    .map_or_else(|| format!("endpoint {}", id.0), str::to_owned)
            });
            let line = serde_json::json!({
                "event": kind,
                "unix_ns": unix_ns,
                "cluster": self.policy.host,
                "endpoint": e.endpoint().and_then(|id| self.address(id)),
                "message": message,
            });
            let _ = writeln!(err, "{line}");
        }
    }

    /// How to connect to `endpoint`: the DestinationRule's TLS mode, or auto mTLS
    /// given the endpoint's own PeerAuthentication mode for its port.
    pub fn upstream_tls(&mut self, tls: &Tls, endpoint: EndpointId) -> Arc<tls::Upstream> {
        if let Some(u) = self.upstream_tls.get(&endpoint) {
            return u.clone();
        }
        let upstream = match self.endpoints.iter().find(|e| e.id == endpoint) {
            Some(e) => {
                let port = e
                    .address
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                let mode = resolve_mtls_mode(
                    &self.peer_authentications,
                    DEFAULT_ROOT_NAMESPACE,
                    &e.namespace,
                    &e.labels,
                    port,
                )
                .mode;
                tls.upstream(&self.policy, Some(mode), Some(e))
            }
            None => tls.upstream(&self.policy, None, None),
        };
        self.upstream_tls.insert(endpoint, upstream.clone());
        upstream
    }

    /// The `IP:PORT` of an endpoint.
    pub fn address(&self, endpoint: EndpointId) -> Option<&str> {
        self.addresses.get(&endpoint).map(String::as_str)
    }
}

/// Locks a cluster, surviving a poisoned lock (a panicking request must not take the
/// cluster down with it).
pub fn lock(cluster: &Mutex<Cluster>) -> MutexGuard<'_, Cluster> {
    cluster.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_map(
    map: &Mutex<BTreeMap<ClusterKey, Arc<Mutex<Cluster>>>>,
) -> MutexGuard<'_, BTreeMap<ClusterKey, Arc<Mutex<Cluster>>>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use mesh_core::compile::{Instance, ProxyId, Registry, RegistryService, snapshot};

    use super::*;

    const DR: &str = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: OUTLIER, interval: 1s, baseEjectionTime: 30s }
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
";

    fn config(outlier_errors: u32, v2_address: &str) -> (ConfigSet, Snapshot) {
        let text = DR.replace("OUTLIER", &outlier_errors.to_string());
        let (set, findings) = ConfigSet::load(&[("dr.yaml".to_owned(), text)]);
        assert!(findings.is_empty(), "{findings:?}");
        let registry = Registry::default().with_service(
            RegistryService::new("reviews", "default")
                .instance(Instance::new("127.0.0.1:9081").label("version", "v1"))
                .instance(Instance::new(v2_address).label("version", "v2")),
        );
        let snap = snapshot(&set, &registry, &ProxyId::new("client", "default"), 1);
        (set, snap)
    }

    const HOST: &str = "reviews.default.svc.cluster.local";

    #[test]
    fn an_update_keeps_unchanged_clusters_and_rebuilds_changed_ones() {
        let (set, snap) = config(5, "127.0.0.1:9082");
        let mesh = Mesh::new(set, snap, Locality::default(), 1);
        let v1 = mesh.cluster(HOST, Some("v1")).unwrap();
        let v2 = mesh.cluster(HOST, Some("v2")).unwrap();
        let before = mesh.config();

        // v2 moves: its cluster is rebuilt, v1's state survives.
        let (set, mut snap) = config(5, "127.0.0.1:9083");
        snap.version = 2;
        let stats = mesh.update(set, snap);
        assert_eq!(
            stats,
            UpdateStats {
                kept: 1,
                rebuilt: 1
            }
        );
        assert_eq!(mesh.config().version, 2);
        assert!(Arc::ptr_eq(&v1, &mesh.cluster(HOST, Some("v1")).unwrap()));
        let new_v2 = mesh.cluster(HOST, Some("v2")).unwrap();
        assert!(!Arc::ptr_eq(&v2, &new_v2));
        assert_eq!(lock(&new_v2).address(EndpointId(1)), Some("127.0.0.1:9083"));

        // A request that started on the old config still finds its clusters there.
        let old_v2 = mesh.cluster_in(&before, HOST, Some("v2")).unwrap();
        assert!(Arc::ptr_eq(&v2, &old_v2));
        assert_eq!(before.version, 1);

        // A policy change rebuilds every cluster it touches.
        let (set, mut snap) = config(7, "127.0.0.1:9083");
        snap.version = 3;
        let stats = mesh.update(set, snap);
        assert_eq!(
            stats,
            UpdateStats {
                kept: 0,
                rebuilt: 2
            }
        );
        assert_eq!(mesh.config().cluster_count(), 0);
        assert_eq!(mesh.snapshot().version, 3);
    }
}
