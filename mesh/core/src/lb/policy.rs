//! Istio's DestinationRule `trafficPolicy.loadBalancer`, normalized.

use crate::Locality;

/// Where a consistent-hash key comes from (Istio `consistentHash`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HashPolicy {
    /// `httpHeaderName`: the header's value (names compare case-insensitively).
    Header { name: String },
    /// `httpCookie`: the cookie's value. Envoy generates the cookie when it is absent
    /// and a TTL is set; meshrig does not (the pick falls back to random).
    Cookie { name: String },
    /// `useSourceIp`: the downstream address.
    SourceIp,
    /// `httpQueryParameterName`: the query parameter's value (not percent-decoded).
    QueryParameter { name: String },
}

/// The load-balancing algorithm.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LbAlgorithm {
    /// `ROUND_ROBIN`: smooth weighted round robin.
    RoundRobin,
    /// `RANDOM`: weighted random.
    Random,
    /// `LEAST_REQUEST`: with equal weights, sample `choice_count` endpoints at random
    /// and take the one with the fewest active requests ("power of two choices");
    /// with unequal weights, weighted random by `weight / (active + 1)`.
    LeastRequest {
        /// Envoy's `choice_count`. Default is 2, as Envoy.
        choice_count: u32,
    },
    /// `consistentHash` with `ringHash`: a ketama ring.
    RingHash {
        hash: HashPolicy,
        /// Envoy's `minimum_ring_size` (Istio `ringHash.minimumRingSize`). Default is
        /// 1024, as Istio and Envoy.
        minimum_ring_size: u64,
        /// Envoy's `maximum_ring_size`. Default is 8M (8 388 608), as Envoy.
        maximum_ring_size: u64,
    },
    /// `consistentHash` with `maglev`: a Maglev lookup table.
    Maglev {
        hash: HashPolicy,
        /// Envoy's `table_size` (Istio `maglev.tableSize`); should be prime. Default is
        /// 65537, as Envoy.
        table_size: u64,
    },
}

/// Envoy's default ring minimum.
pub const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
/// Envoy's default ring maximum.
pub const DEFAULT_MAXIMUM_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Envoy's default Maglev table size.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;

impl LbAlgorithm {
    /// `LEAST_REQUEST` with Envoy's 2 choices.
    pub fn least_request() -> Self {
        LbAlgorithm::LeastRequest { choice_count: 2 }
    }

    /// `consistentHash` with a ring and Envoy's default sizes.
    pub fn ring_hash(hash: HashPolicy) -> Self {
        LbAlgorithm::RingHash {
            hash,
            minimum_ring_size: DEFAULT_MINIMUM_RING_SIZE,
            maximum_ring_size: DEFAULT_MAXIMUM_RING_SIZE,
        }
    }

    /// `consistentHash` with Maglev and Envoy's default table size.
    pub fn maglev(hash: HashPolicy) -> Self {
        LbAlgorithm::Maglev {
            hash,
            table_size: DEFAULT_MAGLEV_TABLE_SIZE,
        }
    }

    /// The hash policy, for consistent-hash algorithms.
    pub fn hash_policy(&self) -> Option<&HashPolicy> {
        match self {
            LbAlgorithm::RingHash { hash, .. } | LbAlgorithm::Maglev { hash, .. } => Some(hash),
            _ => None,
        }
    }
}

impl Default for LbAlgorithm {
    /// `LEAST_REQUEST`: Istio's default since 1.14 (it was `ROUND_ROBIN` before).
    fn default() -> Self {
        LbAlgorithm::least_request()
    }
}

/// Locality-aware priority failover: endpoints are ranked by how close they are to the
/// client, and traffic spills to farther ones as closer ones become unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalityFailover {
    /// The client's (this proxy's) locality.
    pub client: Locality,
    /// Envoy's overprovisioning factor, in percent: a priority with 1/1.4 ≈ 71% healthy
    /// endpoints still takes all its traffic. Default is 140, as Envoy.
    pub overprovisioning_factor_percent: u32,
}

/// How one cluster (or subset) is load-balanced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LbPolicy {
    /// The algorithm. Default is [`LbAlgorithm::LeastRequest`], as Istio ≥ 1.14.
    pub algorithm: LbAlgorithm,
    /// Locality failover, when engaged. Istio engages it only when the destination has
    /// outlier detection configured (without it, nothing ever marks a locality
    /// unhealthy): build it with [`LbPolicy::with_locality_failover`], which applies that
    /// rule. Default is `None`.
    pub locality_failover: Option<LocalityFailover>,
    /// The panic threshold in percent: a priority with fewer healthy endpoints than this
    /// is load-balanced over *all* its endpoints. Default is 50, as Envoy; Istio sets it
    /// from `outlierDetection.minHealthPercent` (0 unless set) whenever outlier
    /// detection is configured.
    pub panic_threshold_percent: u32,
}

impl Default for LbPolicy {
    fn default() -> Self {
        LbPolicy {
            algorithm: LbAlgorithm::default(),
            locality_failover: None,
            panic_threshold_percent: 50,
        }
    }
}

impl LbPolicy {
    /// A policy with `algorithm` and the other defaults.
    pub fn new(algorithm: LbAlgorithm) -> Self {
        LbPolicy {
            algorithm,
            ..LbPolicy::default()
        }
    }

    /// Engages locality failover for a client at `client` — only if
    /// `outlier_detection_configured`, as Istio: otherwise the policy is unchanged and
    /// every endpoint is one priority.
    pub fn with_locality_failover(
        mut self,
        client: Locality,
        outlier_detection_configured: bool,
    ) -> Self {
        self.locality_failover = outlier_detection_configured.then_some(LocalityFailover {
            client,
            overprovisioning_factor_percent: 140,
        });
        self
    }
}
