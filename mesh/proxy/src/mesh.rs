//! The proxy's view of the mesh and its per-cluster policy state.
//!
//! [`Mesh`] holds the static configuration (the Istio set, the proxy's [`Snapshot`])
//! and, per destination cluster (host, subset) it has used, mesh-core's
//! [`LoadBalancer`], [`OutlierDetector`] and [`RetryBudget`] — as the simulator's
//! sidecar does (`sim/src/world/control.rs`). Each cluster sits behind its own mutex,
//! held only for a decision, never across an `.await`. Lock order: cluster, then RNG.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use mesh_core::compile::{ClusterPolicy, Snapshot, cluster_policy};
use mesh_core::config::ConfigSet;
use mesh_core::lb::{LoadBalancer, select_subset};
use mesh_core::outlier::OutlierDetector;
use mesh_core::retry::RetryBudget;
use mesh_core::{EndpointId, Locality, Time};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::upstream::Upstreams;

/// A destination cluster: host (FQDN) and subset.
type ClusterKey = (String, Option<String>);

/// Everything the listeners share.
#[derive(Debug)]
pub struct Mesh {
    pub clock: Clock,
    pub set: Arc<ConfigSet>,
    pub snapshot: Arc<Snapshot>,
    /// The proxy's locality, for locality-aware load balancing.
    pub locality: Locality,
    pub upstreams: Upstreams,
    pub metrics: Metrics,
    rng: Mutex<SmallRng>,
    clusters: Mutex<BTreeMap<ClusterKey, Arc<Mutex<Cluster>>>>,
}

/// One destination cluster's policy state.
#[derive(Debug)]
pub struct Cluster {
    pub policy: ClusterPolicy,
    pub lb: LoadBalancer,
    pub outlier: Option<OutlierDetector>,
    pub budget: RetryBudget,
    addresses: BTreeMap<EndpointId, String>,
}

impl Mesh {
    /// A mesh view for `snapshot`, drawing from an RNG seeded with `seed`.
    pub fn new(set: ConfigSet, snapshot: Snapshot, locality: Locality, seed: u64) -> Self {
        Mesh {
            clock: Clock::start(),
            set: Arc::new(set),
            snapshot: Arc::new(snapshot),
            locality,
            upstreams: Upstreams::default(),
            metrics: Metrics::default(),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            clusters: Mutex::new(BTreeMap::new()),
        }
    }

    /// Now, on the proxy's monotonic clock.
    pub fn now(&self) -> Time {
        self.clock.now()
    }

    /// The seeded RNG every draw comes from.
    pub fn rng(&self) -> MutexGuard<'_, SmallRng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cluster (`host`, `subset`), created on first use; `None` when the snapshot
    /// has no such host.
    pub fn cluster(&self, host: &str, subset: Option<&str>) -> Option<Arc<Mutex<Cluster>>> {
        let key = (host.to_owned(), subset.map(str::to_owned));
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clusters.get(&key) {
            return Some(c.clone());
        }
        let all = self.snapshot.cluster(host)?;
        let policy = cluster_policy(&self.set, host, subset, Some(&self.locality));
        let endpoints = if subset.is_some() {
            select_subset(all, &policy.subset_labels)
        } else {
            all.to_vec()
        };
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
            policy,
        };
        let cluster = Arc::new(Mutex::new(cluster));
        clusters.insert(key, cluster.clone());
        Some(cluster)
    }
}

impl Cluster {
    /// Runs the outlier detector's sweep if it is due (ejection intervals end,
    /// success-rate checks), lazily on the next request instead of on a timer.
    pub fn sweep(&mut self, now: Time) {
        if let Some(od) = &mut self.outlier
            && od.poll_timeout().is_some_and(|at| at <= now)
        {
            let _ = od.handle_timeout(now);
        }
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
