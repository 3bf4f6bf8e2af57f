//! The control plane's state, without IO: the configuration layers, the global
//! version, the proxies and their ACKs, propagation statistics.
//!
//! Time comes in as an argument (`now`), so the tests step it. The server wraps one
//! [`State`] in a mutex; nothing here blocks or awaits.
//!
//! The configuration set is two layers, loaded in this order (a later resource with
//! the same kind, namespace and name replaces an earlier one, as `kubectl apply`):
//! the **files** (re-read by the watcher) and the **published** sources (the API and
//! `POST /v1/config`; publishing a source under a name replaces the one published
//! under that name before). A change is checked as the whole set: any error finding
//! rejects it and the last good version keeps being served.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_core::compile::snapshot;
use mesh_core::config::{ConfigSet, Severity};
use serde::Serialize;

use crate::registry::RegistryFile;
use crate::wire::{Ack, ConfigResponse, ProxyIdentity, Source, hash_hex};

/// Versions whose propagation is kept (older ones are dropped).
pub const MAX_TRACKED_VERSIONS: usize = 64;

/// Proxies remembered; the longest-unseen is forgotten beyond this.
pub const MAX_PROXIES: usize = 10_000;

/// Longest error text kept per NACK or rejection line.
const MAX_ERROR_CHARS: usize = 2_000;

/// The quantiles of proxies propagation is reported at.
pub const PROPAGATION_QUANTILES: [f64; 3] = [0.5, 0.9, 1.0];

/// One published version: everything a proxy's view is compiled from.
#[derive(Debug)]
pub struct Published {
    pub version: u64,
    /// The effective sources (files, then published), in load order.
    pub sources: Vec<Source>,
    pub set: ConfigSet,
    pub registry: RegistryFile,
}

impl Published {
    /// What `proxy` is sent: its snapshot's hash, the sources, its registry view.
    pub fn view_for(&self, proxy: &ProxyIdentity) -> ConfigResponse {
        let registry = self.registry.for_workload(&proxy.workload);
        let snap = snapshot(
            &self.set,
            &registry.to_registry(),
            &proxy.proxy_id(),
            self.version,
        );
        ConfigResponse {
            version: self.version,
            proxy: proxy.clone(),
            snapshot_hash: hash_hex(snap.digest),
            sources: self.sources.clone(),
            registry,
        }
    }
}

/// Why a change was not published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// What changed: `files`, `registry` or `api`.
    pub origin: String,
    /// The version that stays in service.
    pub kept_version: u64,
    /// Every error, `file:line: field.path: message` for YAML.
    pub errors: Vec<String>,
}

impl Rejection {
    /// One line for the log: the first error and how many more.
    pub fn line(&self) -> String {
        let first = self.errors.first().map_or("", String::as_str);
        let more = match self.errors.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        format!(
            "rejected {} change, keeping version {}: {first}{more}",
            self.origin, self.kept_version
        )
    }
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The content is what is already served: no new version.
    Unchanged,
    /// A new version was published.
    Published(u64),
    /// Invalid: the last good version stays.
    Rejected(Rejection),
}

/// A proxy's last NACK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nack {
    pub version: u64,
    pub error: String,
}

/// What the control plane knows of one proxy.
#[derive(Debug, Clone)]
struct ProxyState {
    identity: ProxyIdentity,
    last_seen: Instant,
    open_polls: u32,
    acked_version: Option<u64>,
    last_nack: Option<Nack>,
    nacks: u64,
}

/// How one version spread.
#[derive(Debug, Clone)]
struct Propagation {
    version: u64,
    published_at: Instant,
    /// Proxies connected when it was published: the denominator.
    expected: BTreeSet<String>,
    /// Proxy id → time from publish to its ACK (of this or a later version).
    acked: BTreeMap<String, Duration>,
    nacks: u64,
}

impl Propagation {
    /// Time until `q` (0..=1) of the expected proxies ACKed; `None` while fewer have,
    /// or when no proxy was connected.
    fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.expected.len();
        if n == 0 {
            return None;
        }
        // The smallest k with k / n >= q (at least one proxy).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let k = ((q * n as f64).ceil() as usize).clamp(1, n);
        let mut times: Vec<Duration> = self.acked.values().copied().collect();
        times.sort();
        times.get(k - 1).copied()
    }
}

/// The status report (`GET /v1/status`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: u64,
    pub sources: Vec<String>,
    pub services: usize,
    pub proxies: Vec<ProxyStatus>,
    pub propagation: Vec<PropagationStatus>,
    pub nacks_total: u64,
    pub rejections_total: u64,
    pub last_rejection: Option<Rejection>,
}

/// One proxy in [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub id: String,
    pub workload: String,
    pub namespace: String,
    pub connected: bool,
    pub acked_version: Option<u64>,
    pub nacks: u64,
    pub last_nack: Option<Nack>,
}

/// One version in [`Status`]: milliseconds from publish until 50%, 90% and 100% of
/// the proxies connected at publish time ACKed it (`null` until they have).
#[derive(Debug, Clone, Serialize)]
pub struct PropagationStatus {
    pub version: u64,
    pub proxies: usize,
    pub acked: usize,
    pub nacks: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p100_ms: Option<f64>,
}

/// The control plane's state.
#[derive(Debug)]
pub struct State {
    current: Arc<Published>,
    files: Vec<Source>,
    published: Vec<Source>,
    proxies: BTreeMap<String, ProxyState>,
    propagation: VecDeque<Propagation>,
    /// A proxy not seen for this long (and not polling) is disconnected.
    connected_window: Duration,
    nacks_total: u64,
    rejections_total: u64,
    last_rejection: Option<Rejection>,
}

impl State {
    /// Version 1 from `files` and `registry`, or every error if they are invalid.
    /// Proxies count as connected while polling or seen within `connected_window`.
    pub fn new(
        files: Vec<Source>,
        registry: RegistryFile,
        connected_window: Duration,
    ) -> Result<Self, Rejection> {
        let (set, errors) = load(&files);
        if !errors.is_empty() {
            return Err(Rejection {
                origin: "files".to_owned(),
                kept_version: 0,
                errors,
            });
        }
        if let Err(e) = registry.validate() {
            return Err(Rejection {
                origin: "registry".to_owned(),
                kept_version: 0,
                errors: vec![e.to_string()],
            });
        }
        Ok(State {
            current: Arc::new(Published {
                version: 1,
                sources: files.clone(),
                set,
                registry,
            }),
            files,
            published: Vec::new(),
            proxies: BTreeMap::new(),
            propagation: VecDeque::new(),
            connected_window,
            nacks_total: 0,
            rejections_total: 0,
            last_rejection: None,
        })
    }

    /// The version in service.
    pub fn current(&self) -> Arc<Published> {
        self.current.clone()
    }

    /// The watched files now read `files`.
    pub fn set_files(&mut self, files: Vec<Source>, now: Instant) -> Change {
        let sources = effective(&files, &self.published);
        let registry = self.current.registry.clone();
        let change = self.try_publish("files", sources, registry, now);
        if !matches!(change, Change::Rejected(_)) {
            self.files = files;
        }
        change
    }

    /// The registry file now reads `text`.
    pub fn set_registry_text(&mut self, text: &str, now: Instant) -> Change {
        match RegistryFile::parse(text) {
            Ok(registry) => {
                let sources = self.current.sources.clone();
                self.try_publish("registry", sources, registry, now)
            }
            Err(e) => self.reject("registry", vec![e.to_string()]),
        }
    }

    /// Publishes `sources` on top of the files; each replaces an earlier published
    /// source of the same name.
    pub fn publish(&mut self, sources: Vec<Source>, now: Instant) -> Change {
        let mut published = self.published.clone();
        for s in sources {
            match published.iter_mut().find(|p| p.name == s.name) {
                Some(p) => *p = s,
                None => published.push(s),
            }
        }
        let effective = effective(&self.files, &published);
        let registry = self.current.registry.clone();
        let change = self.try_publish("api", effective, registry, now);
        if !matches!(change, Change::Rejected(_)) {
            self.published = published;
        }
        change
    }

    fn try_publish(
        &mut self,
        origin: &str,
        sources: Vec<Source>,
        registry: RegistryFile,
        now: Instant,
    ) -> Change {
        if sources == self.current.sources && registry == self.current.registry {
            return Change::Unchanged;
        }
        let (set, errors) = load(&sources);
        if !errors.is_empty() {
            return self.reject(origin, errors);
        }
        let version = self.current.version + 1;
        self.current = Arc::new(Published {
            version,
            sources,
            set,
            registry,
        });
        let expected = self
            .proxies
            .iter()
            .filter(|(_, p)| self.is_connected(p, now))
            .map(|(id, _)| id.clone())
            .collect();
        if self.propagation.len() == MAX_TRACKED_VERSIONS {
            self.propagation.pop_front();
        }
        self.propagation.push_back(Propagation {
            version,
            published_at: now,
            expected,
            acked: BTreeMap::new(),
            nacks: 0,
        });
        Change::Published(version)
    }

    fn reject(&mut self, origin: &str, mut errors: Vec<String>) -> Change {
        for e in &mut errors {
            truncate(e);
        }
        let rejection = Rejection {
            origin: origin.to_owned(),
            kept_version: self.current.version,
            errors,
        };
        self.rejections_total += 1;
        self.last_rejection = Some(rejection.clone());
        Change::Rejected(rejection)
    }

    fn is_connected(&self, p: &ProxyState, now: Instant) -> bool {
        p.open_polls > 0 || now.saturating_duration_since(p.last_seen) <= self.connected_window
    }

    fn proxy(&mut self, identity: &ProxyIdentity, now: Instant) -> &mut ProxyState {
        if !self.proxies.contains_key(&identity.id) && self.proxies.len() >= MAX_PROXIES {
            let oldest = self
                .proxies
                .iter()
                .min_by_key(|(_, p)| p.last_seen)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.proxies.remove(&id);
            }
        }
        let p = self
            .proxies
            .entry(identity.id.clone())
            .or_insert_with(|| ProxyState {
                identity: identity.clone(),
                last_seen: now,
                open_polls: 0,
                acked_version: None,
                last_nack: None,
                nacks: 0,
            });
        p.identity.clone_from(identity);
        p.last_seen = now;
        p
    }

    /// A proxy started a long poll.
    pub fn poll_started(&mut self, identity: &ProxyIdentity, now: Instant) {
        self.proxy(identity, now).open_polls += 1;
    }

    /// A proxy's long poll ended (answered, timed out or dropped).
    pub fn poll_ended(&mut self, id: &str, now: Instant) {
        if let Some(p) = self.proxies.get_mut(id) {
            p.open_polls = p.open_polls.saturating_sub(1);
            p.last_seen = now;
        }
    }

    /// An ACK or NACK.
    pub fn ack(&mut self, ack: &Ack, now: Instant) {
        let identity = match self.proxies.get(&ack.proxy) {
            Some(p) => p.identity.clone(),
            None => ProxyIdentity {
                id: ack.proxy.clone(),
                ..ProxyIdentity::default()
            },
        };
        let p = self.proxy(&identity, now);
        if ack.ok {
            p.acked_version = Some(p.acked_version.map_or(ack.version, |v| v.max(ack.version)));
            for prop in &mut self.propagation {
                if prop.version <= ack.version
                    && prop.expected.contains(&ack.proxy)
                    && !prop.acked.contains_key(&ack.proxy)
                {
                    let took = now.saturating_duration_since(prop.published_at);
                    prop.acked.insert(ack.proxy.clone(), took);
                }
            }
        } else {
            let mut error = ack
                .error
                .clone()
                .unwrap_or_else(|| "(no reason)".to_owned());
            truncate(&mut error);
            p.nacks += 1;
            p.last_nack = Some(Nack {
                version: ack.version,
                error,
            });
            self.nacks_total += 1;
            if let Some(prop) = self
                .propagation
                .iter_mut()
                .find(|p| p.version == ack.version)
            {
                prop.nacks += 1;
            }
        }
    }

    /// The status report.
    pub fn status(&self, now: Instant) -> Status {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        Status {
            version: self.current.version,
            sources: self
                .current
                .sources
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            services: self.current.registry.services.len(),
            proxies: self
                .proxies
                .iter()
                .map(|(id, p)| ProxyStatus {
                    id: id.clone(),
                    workload: p.identity.workload.clone(),
                    namespace: p.identity.namespace.clone(),
                    connected: self.is_connected(p, now),
                    acked_version: p.acked_version,
                    nacks: p.nacks,
                    last_nack: p.last_nack.clone(),
                })
                .collect(),
            propagation: self
                .propagation
                .iter()
                .map(|p| PropagationStatus {
                    version: p.version,
                    proxies: p.expected.len(),
                    acked: p.acked.len(),
                    nacks: p.nacks,
                    p50_ms: ms(p.quantile(0.5)),
                    p90_ms: ms(p.quantile(0.9)),
                    p100_ms: ms(p.quantile(1.0)),
                })
                .collect(),
            nacks_total: self.nacks_total,
            rejections_total: self.rejections_total,
            last_rejection: self.last_rejection.clone(),
        }
    }

    /// Prometheus text exposition.
    pub fn metrics(&self, now: Instant) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP meshrig_control_config_version The configuration version in service.\n\
             # TYPE meshrig_control_config_version gauge\n",
        );
        out.push_str(&format!(
            "meshrig_control_config_version {}\n",
            self.current.version
        ));
        let connected = self
            .proxies
            .values()
            .filter(|p| self.is_connected(p, now))
            .count();
        out.push_str(
            "# HELP meshrig_control_proxies_connected Proxies polling or seen recently.\n\
             # TYPE meshrig_control_proxies_connected gauge\n",
        );
        out.push_str(&format!("meshrig_control_proxies_connected {connected}\n"));
        out.push_str(
            "# HELP meshrig_control_propagation_seconds Time from publishing a version until the quantile of connected proxies ACKed it.\n\
             # TYPE meshrig_control_propagation_seconds gauge\n",
        );
        for p in &self.propagation {
            for q in PROPAGATION_QUANTILES {
                if let Some(d) = p.quantile(q) {
                    out.push_str(&format!(
                        "meshrig_control_propagation_seconds{{version=\"{}\",quantile=\"{q}\"}} {:.6}\n",
                        p.version,
                        d.as_secs_f64()
                    ));
                }
            }
        }
        out.push_str(
            "# HELP meshrig_control_nacks_total Versions proxies rejected.\n\
             # TYPE meshrig_control_nacks_total counter\n",
        );
        out.push_str(&format!(
            "meshrig_control_nacks_total {}\n",
            self.nacks_total
        ));
        out.push_str(
            "# HELP meshrig_control_rejections_total Configuration changes the control plane rejected.\n\
             # TYPE meshrig_control_rejections_total counter\n",
        );
        out.push_str(&format!(
            "meshrig_control_rejections_total {}\n",
            self.rejections_total
        ));
        out
    }
}

/// Loads `sources` as one set: the set and every error finding as a line.
pub fn load(sources: &[Source]) -> (ConfigSet, Vec<String>) {
    let (set, findings) = ConfigSet::load(&Source::pairs(sources));
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    (set, errors)
}

fn effective(files: &[Source], published: &[Source]) -> Vec<Source> {
    files.iter().chain(published).cloned().collect()
}

fn truncate(text: &mut String) {
    if text.len() > MAX_ERROR_CHARS {
        let mut end = MAX_ERROR_CHARS;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
