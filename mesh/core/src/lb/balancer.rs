//! The load balancer of one cluster (or subset): priorities, panic mode, exclusion of
//! tried endpoints, then the algorithm.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;

use super::hash::{RequestKeys, hash64};
use super::locality::{PRIORITY_LEVELS, PriorityHealth, locality_priority, priority_loads};
use super::policy::{HashPolicy, LbAlgorithm, LbPolicy};
use super::table::{HashTable, Slot};
use crate::{Endpoint, EndpointId};

/// What a pick may look at besides endpoint health.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    /// Inputs of consistent hashing.
    pub keys: RequestKeys<'a>,
    /// Endpoints to avoid: those a retry already tried
    /// ([`RetryState::excluded_endpoints`](crate::retry::RetryState::excluded_endpoints)).
    /// Ignored by consistent hashing, and when every candidate is excluded.
    pub exclude: &'a BTreeSet<EndpointId>,
}

static NO_EXCLUSIONS: BTreeSet<EndpointId> = BTreeSet::new();

impl Default for PickContext<'_> {
    fn default() -> Self {
        PickContext {
            keys: RequestKeys::default(),
            exclude: &NO_EXCLUSIONS,
        }
    }
}

/// How the algorithm chose, for the trace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PickDetail {
    RoundRobin,
    Random,
    /// Power of two choices: the sampled endpoints and their active requests.
    LeastRequest {
        choices: Vec<(EndpointId, u32)>,
    },
    /// Unequal weights: weighted random by `weight / (active + 1)`.
    LeastRequestWeighted {
        active_requests: u32,
    },
    /// Consistent hash of `key`.
    Hash {
        source: HashPolicy,
        key: String,
        hash: u64,
    },
    /// The request has no hash key: random pick, as Envoy.
    HashKeyMissing {
        source: HashPolicy,
    },
}

/// What happened with [`PickContext::exclude`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Exclusion {
    /// Nothing to exclude (or consistent hashing, which keeps its endpoint).
    None,
    /// `count` candidates were skipped as already tried.
    Applied { count: u32 },
    /// Every candidate was already tried: they were all allowed again.
    AllExcludedIgnored,
}

/// Why this endpoint: the decision trace of one pick.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PickTrace {
    /// Whether locality failover is engaged (Istio: only with outlier detection).
    pub locality_failover: bool,
    /// Percent of traffic per priority level (same subzone, zone, region, anywhere), or
    /// one level without locality failover.
    pub priority_loads: Vec<u32>,
    /// The chosen priority level.
    pub priority: u32,
    /// Healthy and total endpoints in it.
    pub healthy: u32,
    pub total: u32,
    /// Healthy share under the panic threshold: ejections ignored, all endpoints used.
    pub panic: bool,
    pub panic_threshold_percent: u32,
    /// Endpoints the algorithm chose among.
    pub candidates: u32,
    pub exclusion: Exclusion,
    pub detail: PickDetail,
}

/// A chosen endpoint and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pick {
    pub endpoint: EndpointId,
    pub trace: PickTrace,
}

/// No endpoint can be picked: the caller answers 503 (Envoy's `UH`, "no healthy
/// upstream").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PickError {
    #[error("no healthy upstream: the cluster has no endpoints")]
    NoEndpoints,
    #[error(
        "no healthy upstream: all {total} endpoints of priority {priority} are unhealthy and the panic threshold is {panic_threshold_percent}%"
    )]
    NoHealthyEndpoints {
        priority: u32,
        total: u32,
        panic_threshold_percent: u32,
    },
}

/// The load balancer of one cluster or subset.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    policy: LbPolicy,
    endpoints: Vec<Endpoint>,
    by_id: EndpointIndex,
    /// Endpoint indices per priority level.
    levels: Vec<Vec<usize>>,
    /// Smooth weighted round robin: current weight per endpoint.
    rr_current: Vec<i64>,
    /// Least request: active requests per endpoint.
    active: Vec<u32>,
    /// Consistent hash: per level, the candidate set the table was built over.
    tables: Vec<Option<(Vec<usize>, HashTable)>>,
    /// Every endpoint has the same weight (then any candidate set does too).
    uniform_weights: bool,
}

// === impl LoadBalancer ===

impl LoadBalancer {
    /// A load balancer over `endpoints` (a cluster, or a subset from
    /// [`select_subset`](super::select_subset)).
    pub fn new(policy: LbPolicy, endpoints: &[Endpoint]) -> Self {
        let mut lb = LoadBalancer {
            policy,
            endpoints: Vec::new(),
            by_id: EndpointIndex::default(),
            levels: Vec::new(),
            rr_current: Vec::new(),
            active: Vec::new(),
            tables: Vec::new(),
            uniform_weights: true,
        };
        lb.update_endpoints(endpoints);
        lb
    }

    /// The policy in force.
    pub fn policy(&self) -> &LbPolicy {
        &self.policy
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Call when the cluster's endpoints change. Active-request counts carry over by
    /// id; round-robin positions and hash tables start afresh.
    pub fn update_endpoints(&mut self, endpoints: &[Endpoint]) {
        let old: BTreeMap<EndpointId, u32> = self
            .endpoints
            .iter()
            .zip(&self.active)
            .map(|(e, &a)| (e.id, a))
            .collect();
        self.endpoints = endpoints.to_vec();
        self.by_id = EndpointIndex::new(endpoints);
        let n_levels = if self.policy.locality_failover.is_some() {
            PRIORITY_LEVELS
        } else {
            1
        };
        self.levels = vec![Vec::new(); n_levels];
        for (i, e) in endpoints.iter().enumerate() {
            let level = match &self.policy.locality_failover {
                Some(f) => locality_priority(&f.client, &e.locality) as usize,
                None => 0,
            };
            self.levels[level].push(i);
        }
        self.rr_current = vec![0; endpoints.len()];
        self.active = endpoints
            .iter()
            .map(|e| old.get(&e.id).copied().unwrap_or(0))
            .collect();
        self.tables = vec![None; n_levels];
        self.uniform_weights = endpoints
            .windows(2)
            .all(|w| w[0].weight.max(1) == w[1].weight.max(1));
    }

    /// Call when a request is sent to `endpoint` (least-request bookkeeping).
    pub fn on_request_start(&mut self, endpoint: EndpointId) {
        if let Some(i) = self.by_id.get(endpoint) {
            self.active[i] += 1;
        }
    }

    /// Call when a request to `endpoint` ends, however it ends.
    pub fn on_request_end(&mut self, endpoint: EndpointId) {
        if let Some(i) = self.by_id.get(endpoint) {
            self.active[i] = self.active[i].saturating_sub(1);
        }
    }

    /// Active requests to `endpoint`, as counted by this load balancer.
    pub fn active_requests(&self, endpoint: EndpointId) -> u32 {
        self.by_id.get(endpoint).map_or(0, |i| self.active[i])
    }

    /// Call for every try, before acquiring a pool permit: chooses the endpoint.
    /// `is_healthy` says whether an endpoint is in the load-balancing set (typically
    /// `|id| !outlier_detector.is_ejected(id)`).
    pub fn pick(
        &mut self,
        ctx: &PickContext<'_>,
        is_healthy: impl Fn(EndpointId) -> bool,
        rng: &mut impl Rng,
    ) -> Result<Pick, PickError> {
        self.pick_inner(ctx, Some(&is_healthy), rng)
    }

    /// [`LoadBalancer::pick`] when every endpoint is in the load-balancing set (no
    /// outlier detector, or none ejected): the same decision, without asking about
    /// each endpoint.
    pub fn pick_all_healthy(
        &mut self,
        ctx: &PickContext<'_>,
        rng: &mut impl Rng,
    ) -> Result<Pick, PickError> {
        self.pick_inner(ctx, None::<&fn(EndpointId) -> bool>, rng)
    }

    fn pick_inner(
        &mut self,
        ctx: &PickContext<'_>,
        is_healthy: Option<&impl Fn(EndpointId) -> bool>,
        rng: &mut impl Rng,
    ) -> Result<Pick, PickError> {
        if self.endpoints.is_empty() {
            return Err(PickError::NoEndpoints);
        }
        // Count first, without allocating: the common case (everything healthy, no
        // exclusions) then chooses over the level's own index list.
        let health: Vec<PriorityHealth> = self
            .levels
            .iter()
            .map(|lv| PriorityHealth {
                healthy: match is_healthy {
                    Some(f) => lv.iter().filter(|&&i| f(self.endpoints[i].id)).count() as u32,
                    None => lv.len() as u32,
                },
                total: lv.len() as u32,
            })
            .collect();
        let overprovisioning = self
            .policy
            .locality_failover
            .as_ref()
            .map_or(140, |f| f.overprovisioning_factor_percent);
        let loads = priority_loads(&health, overprovisioning);
        let level = choose_level(&loads, rng);
        let PriorityHealth { healthy, total } = health[level];
        let threshold = self.policy.panic_threshold_percent;
        let panic = total > 0 && u64::from(healthy) * 100 < u64::from(threshold) * u64::from(total);
        if !panic && healthy == 0 {
            return Err(PickError::NoHealthyEndpoints {
                priority: level as u32,
                total,
                panic_threshold_percent: threshold,
            });
        }
        let all = std::mem::take(&mut self.levels[level]);
        let healthy_set = is_healthy.filter(|_| !(panic || healthy == total));
        let picked = self.pick_in_level(level, &all, healthy_set, ctx, rng);
        self.levels[level] = all;
        let (index, candidates, exclusion, detail) = picked;
        Ok(Pick {
            endpoint: self.endpoints[index].id,
            trace: PickTrace {
                locality_failover: self.policy.locality_failover.is_some(),
                priority_loads: loads,
                priority: level as u32,
                healthy,
                total,
                panic,
                panic_threshold_percent: threshold,
                candidates,
                exclusion,
                detail,
            },
        })
    }

    /// Picks among the endpoints `all` of one level: all of them, or (given
    /// `healthy_only`) the healthy ones; then leaves out
    /// excluded ones. Returns the index, the candidate count, the exclusion and how
    /// the algorithm chose.
    fn pick_in_level(
        &mut self,
        level: usize,
        all: &[usize],
        healthy_only: Option<&impl Fn(EndpointId) -> bool>,
        ctx: &PickContext<'_>,
        rng: &mut impl Rng,
    ) -> (usize, u32, Exclusion, PickDetail) {
        let filtered: Vec<usize>;
        let candidates: &[usize] = match healthy_only {
            None => all,
            Some(is_healthy) => {
                filtered = all
                    .iter()
                    .copied()
                    .filter(|&i| is_healthy(self.endpoints[i].id))
                    .collect();
                &filtered
            }
        };
        let hashing = self.policy.algorithm.hash_policy().is_some();
        let kept: Vec<usize>;
        let (candidates, exclusion) = if hashing || ctx.exclude.is_empty() {
            (candidates, Exclusion::None)
        } else {
            kept = candidates
                .iter()
                .copied()
                .filter(|&i| !ctx.exclude.contains(&self.endpoints[i].id))
                .collect();
            match kept.len() {
                0 => (candidates, Exclusion::AllExcludedIgnored),
                n => {
                    let count = (candidates.len() - n) as u32;
                    let exclusion = if count == 0 {
                        Exclusion::None
                    } else {
                        Exclusion::Applied { count }
                    };
                    (&kept[..], exclusion)
                }
            }
        };
        let (index, detail) = self.choose(level, candidates, ctx, rng);
        (index, candidates.len() as u32, exclusion, detail)
    }

    /// Runs the algorithm over `candidates` (non-empty endpoint indices).
    fn choose(
        &mut self,
        level: usize,
        candidates: &[usize],
        ctx: &PickContext<'_>,
        rng: &mut impl Rng,
    ) -> (usize, PickDetail) {
        match self.policy.algorithm.clone() {
            LbAlgorithm::RoundRobin => (self.round_robin(candidates), PickDetail::RoundRobin),
            LbAlgorithm::Random => (
                self.weighted_random(candidates, |_| 1.0, rng),
                PickDetail::Random,
            ),
            LbAlgorithm::LeastRequest { choice_count } => {
                self.least_request(candidates, choice_count.max(1), rng)
            }
            LbAlgorithm::RingHash {
                hash,
                minimum_ring_size,
                maximum_ring_size,
            } => self.hashed(level, candidates, ctx, &hash, rng, |slots| {
                HashTable::ring(slots, minimum_ring_size, maximum_ring_size)
            }),
            LbAlgorithm::Maglev { hash, table_size } => {
                self.hashed(level, candidates, ctx, &hash, rng, |slots| {
                    HashTable::maglev(slots, table_size)
                })
            }
        }
    }

    /// Smooth weighted round robin (nginx): deterministic, and exact over a cycle.
    fn round_robin(&mut self, candidates: &[usize]) -> usize {
        let total: i64 = candidates.iter().map(|&i| i64::from(self.weight(i))).sum();
        let mut best = candidates[0];
        for &i in candidates {
            self.rr_current[i] += i64::from(self.weight(i));
            if self.rr_current[i] > self.rr_current[best] {
                best = i;
            }
        }
        self.rr_current[best] -= total;
        best
    }

    /// Weighted random by `weight × factor(index)`.
    fn weighted_random(
        &self,
        candidates: &[usize],
        factor: impl Fn(usize) -> f64,
        rng: &mut impl Rng,
    ) -> usize {
        let weights: Vec<f64> = candidates
            .iter()
            .map(|&i| f64::from(self.weight(i)) * factor(i))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut r = rng.random::<f64>() * total;
        for (&i, w) in candidates.iter().zip(&weights) {
            if r < *w {
                return i;
            }
            r -= w;
        }
        *candidates.last().expect("candidates are not empty")
    }

    fn least_request(
        &self,
        candidates: &[usize],
        choice_count: u32,
        rng: &mut impl Rng,
    ) -> (usize, PickDetail) {
        let first_weight = self.weight(candidates[0]);
        if self.uniform_weights || candidates.iter().all(|&i| self.weight(i) == first_weight) {
            let mut choices = Vec::with_capacity(choice_count as usize);
            let mut best: Option<usize> = None;
            for _ in 0..choice_count {
                let i = candidates[rng.random_range(0..candidates.len())];
                choices.push((self.endpoints[i].id, self.active[i]));
                if best.is_none_or(|b| self.active[i] < self.active[b]) {
                    best = Some(i);
                }
            }
            (
                best.expect("choice_count >= 1"),
                PickDetail::LeastRequest { choices },
            )
        } else {
            let i = self.weighted_random(candidates, |i| 1.0 / f64::from(self.active[i] + 1), rng);
            (
                i,
                PickDetail::LeastRequestWeighted {
                    active_requests: self.active[i],
                },
            )
        }
    }

    fn hashed(
        &mut self,
        level: usize,
        candidates: &[usize],
        ctx: &PickContext<'_>,
        policy: &HashPolicy,
        rng: &mut impl Rng,
        build: impl FnOnce(&[Slot<'_>]) -> HashTable,
    ) -> (usize, PickDetail) {
        let Some(key) = ctx.keys.key(policy) else {
            let i = candidates[rng.random_range(0..candidates.len())];
            return (
                i,
                PickDetail::HashKeyMissing {
                    source: policy.clone(),
                },
            );
        };
        let stale = !matches!(&self.tables[level], Some((built, _)) if built == candidates);
        if stale {
            let slots: Vec<Slot<'_>> = candidates
                .iter()
                .map(|&i| Slot {
                    index: i,
                    address: &self.endpoints[i].address,
                    weight: self.endpoints[i].weight,
                })
                .collect();
            let table = build(&slots);
            self.tables[level] = Some((candidates.to_vec(), table));
        }
        let hash = hash64(key.as_bytes(), 0);
        let table = &self.tables[level].as_ref().expect("built above").1;
        let i = table
            .lookup(hash)
            .expect("tables over non-empty candidates are non-empty");
        (
            i,
            PickDetail::Hash {
                source: policy.clone(),
                key,
                hash,
            },
        )
    }

    /// An endpoint's weight; 0 is taken as 1 (as Envoy, which rejects 0).
    fn weight(&self, i: usize) -> u32 {
        self.endpoints[i].weight.max(1)
    }
}

/// Chooses a priority level by its load; without randomness when one level takes all.
fn choose_level(loads: &[u32], rng: &mut impl Rng) -> usize {
    let busy: Vec<usize> = (0..loads.len()).filter(|&i| loads[i] > 0).collect();
    match busy[..] {
        [] => 0,
        [only] => only,
        _ => {
            let mut r = rng.random_range(0..100u32);
            for &i in &busy {
                if r < loads[i] {
                    return i;
                }
                r -= loads[i];
            }
            *busy.last().expect("busy is not empty")
        }
    }
}

// === EndpointIndex ===

/// Endpoint id → position in the balancer's list. Ids are dense per service (0, 1, ...),
/// so a vector indexed by id is the common case (one load per request start and end);
/// sparse ids fall back to a map.
#[derive(Debug, Clone, Default)]
enum EndpointIndex {
    #[default]
    Empty,
    /// `slots[id]` is the position, or `u32::MAX` for an id not in the list.
    Dense(Vec<u32>),
    Sparse(BTreeMap<EndpointId, usize>),
}

impl EndpointIndex {
    fn new(endpoints: &[Endpoint]) -> Self {
        let Some(max) = endpoints.iter().map(|e| e.id.0 as usize).max() else {
            return EndpointIndex::Empty;
        };
        if max <= 4 * endpoints.len() + 64 {
            let mut slots = vec![u32::MAX; max + 1];
            for (i, e) in endpoints.iter().enumerate() {
                slots[e.id.0 as usize] = i as u32;
            }
            EndpointIndex::Dense(slots)
        } else {
            EndpointIndex::Sparse(
                endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.id, i))
                    .collect(),
            )
        }
    }

    fn get(&self, id: EndpointId) -> Option<usize> {
        match self {
            EndpointIndex::Empty => None,
            EndpointIndex::Dense(slots) => slots
                .get(id.0 as usize)
                .copied()
                .filter(|&i| i != u32::MAX)
                .map(|i| i as usize),
            EndpointIndex::Sparse(map) => map.get(&id).copied(),
        }
    }
}
