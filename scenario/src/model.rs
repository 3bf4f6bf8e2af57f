//! The scenario model: plain data, as the drivers (simulator, real runner) read it.
//!
//! Everything here is already defaulted, merged and checked by [`crate::parse`]:
//! every service has at least one version, every version's [`App`] has the service's
//! defaults merged in, every name a field refers to exists in the topology, and every
//! time is in nanoseconds.

use std::collections::BTreeMap;

use crate::assert::AssertExpr;
use crate::dist::Dist;

/// `apiVersion` of a scenario document.
pub const API_VERSION: &str = "meshrig.dev/v1";
/// `kind` of a scenario document.
pub const KIND: &str = "Scenario";

/// A whole scenario: what to build, what load to send, what to break, what to check.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.description`.
    pub description: Option<String>,
    /// `spec.seed`. Default 1 (the CLI's `--seed` overrides it).
    pub seed: u64,
    /// `spec.duration`: length of the run.
    pub duration_ns: u64,
    pub topology: Topology,
    pub network: Network,
    pub mesh: Mesh,
    pub workload: Vec<Workload>,
    pub faults: Vec<Fault>,
    pub assertions: Vec<Assertion>,
    /// `spec.sim.costTable`: a calibration table name or a file path. Default `default`.
    pub cost_table: String,
}

impl Scenario {
    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.topology.services.iter().find(|s| s.name == name)
    }

    /// The zone named `name`.
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.topology.zones.iter().find(|z| z.name == name)
    }
}

/// Zones and the services placed in them.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// At least one; the first is the default `fromZone` of workloads.
    pub zones: Vec<Zone>,
    pub services: Vec<Service>,
}

/// A failure domain: instances in one zone share its intra-zone link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    /// Default `region`.
    pub region: String,
}

/// A service: one name (and host), one or more versions of its workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    /// Default `default`.
    pub namespace: String,
    /// Default: the service name. The SPIFFE identity is
    /// `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`.
    pub service_account: String,
    /// Default 9080.
    pub port: u16,
    /// CPU cores per instance. Default 2.
    pub cores: u32,
    /// Always at least one; the `instances` shorthand gives one version `v1`.
    pub versions: Vec<Version>,
}

impl Service {
    /// The version named `name`.
    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.name == name)
    }

    /// `<name>.<namespace>.svc.cluster.local`.
    pub fn fqdn(&self) -> String {
        mesh_core::config::fqdn(&self.name, &self.namespace)
    }
}

/// One version of a service's workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub name: String,
    /// Where its instances run.
    pub placements: Vec<Placement>,
    /// Pod labels; always include `app=<service>` and `version=<version>`.
    pub labels: BTreeMap<String, String>,
    /// Application behaviour, the service's `app` merged under the version's.
    pub app: App,
}

impl Version {
    /// Instances over every zone.
    pub fn instance_count(&self) -> u32 {
        self.placements.iter().map(|p| p.count).sum()
    }
}

/// `count` instances in `zone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub zone: String,
    pub count: u32,
}

/// What the application in an instance does with a request.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// CPU-independent time to produce a response. Default `fixed: 1ms`.
    pub service_time: Dist,
    /// Fraction of requests answered with `error_status`, 0..=1. Default 0.
    pub error_rate: f64,
    /// Default 500.
    pub error_status: u16,
    /// Response body size. Default 512.
    pub response_bytes: u64,
    /// Upstream calls made, one after another, for every request. Default none.
    pub calls: Vec<Call>,
}

impl Default for App {
    fn default() -> Self {
        App {
            service_time: Dist::Fixed { ns: 1_000_000 },
            error_rate: 0.0,
            error_status: 500,
            response_bytes: 512,
            calls: Vec::new(),
        }
    }
}

/// One upstream call an application makes per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub service: String,
    /// Default `/`.
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

/// The modelled network.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Between instances of one zone. Default latency `fixed: 50us`.
    pub intra_zone: Link,
    /// Between zones. Default latency `fixed: 1ms`.
    pub inter_zone: Link,
    /// Per zone pair, replacing `inter_zone` (or `intra_zone` for `[a, a]`).
    pub links: Vec<LinkOverride>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            intra_zone: Link::with_latency(Dist::Fixed { ns: 50_000 }),
            inter_zone: Link::with_latency(Dist::Fixed { ns: 1_000_000 }),
            links: Vec::new(),
        }
    }
}

impl Network {
    /// The link between zones `a` and `b` (in either order).
    pub fn link(&self, a: &str, b: &str) -> &Link {
        let over = self.links.iter().rev().find(|l| {
            let (x, y) = (&l.between.0, &l.between.1);
            (x == a && y == b) || (x == b && y == a)
        });
        match over {
            Some(l) => &l.link,
            None if a == b => &self.intra_zone,
            None => &self.inter_zone,
        }
    }
}

/// One-way properties of a link.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// One-way latency per message.
    pub latency: Dist,
    /// Bits per second; `None` = unlimited (the default).
    pub bandwidth_bps: Option<u64>,
    /// Fraction of messages lost, 0..=1. Default 0.
    pub loss: f64,
}

impl Link {
    /// A link with `latency`, unlimited bandwidth and no loss.
    pub fn with_latency(latency: Dist) -> Self {
        Link {
            latency,
            bandwidth_bps: None,
            loss: 0.0,
        }
    }
}

/// A link between two zones that differs from the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkOverride {
    pub between: (String, String),
    pub link: Link,
}

/// The mesh: sidecars, mTLS, Istio configuration, control plane and CA.
#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    /// 0 (no mesh: `enabled: false`), 1 (client sidecar only) or 2 (default).
    pub proxies_per_hop: u8,
    /// The mesh-wide PeerAuthentication mode. Default `PERMISSIVE`.
    pub mtls: MtlsSetting,
    /// Istio resources, in order.
    pub config: Vec<ConfigSource>,
    /// Control plane propagation delay per proxy. Default `fixed: 100ms`.
    pub push_delay: Dist,
    /// Default `cluster.local`.
    pub trust_domain: String,
    /// Workload certificate lifetime. Default 24h.
    pub cert_ttl_ns: u64,
    /// Time for the CA to sign a certificate. Default `fixed: 5ms`.
    pub issue_latency: Dist,
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh {
            proxies_per_hop: 2,
            mtls: MtlsSetting::Permissive,
            config: Vec::new(),
            push_delay: Dist::Fixed { ns: 100_000_000 },
            trust_domain: "cluster.local".to_owned(),
            cert_ttl_ns: 24 * 3_600 * 1_000_000_000,
            issue_latency: Dist::Fixed { ns: 5_000_000 },
        }
    }
}

/// Mesh-wide mTLS mode, as a PeerAuthentication sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsSetting {
    /// Only mTLS is accepted.
    Strict,
    /// mTLS and plaintext are accepted; sidecars send mTLS (Istio's default).
    Permissive,
    /// Plaintext only.
    Disable,
}

impl MtlsSetting {
    /// Every value with its spelling.
    pub const ALL: [(&'static str, MtlsSetting); 3] = [
        ("STRICT", MtlsSetting::Strict),
        ("PERMISSIVE", MtlsSetting::Permissive),
        ("DISABLE", MtlsSetting::Disable),
    ];
}

/// Where Istio configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file, relative to the scenario file; `line` is the scenario line naming it.
    File { path: String, line: u32 },
    /// YAML text in the scenario; `line` is the line of its `inline:` key.
    Inline { text: String, line: u32 },
}

impl ConfigSource {
    /// The scenario line of this entry.
    pub fn line(&self) -> u32 {
        match self {
            ConfigSource::File { line, .. } | ConfigSource::Inline { line, .. } => *line,
        }
    }
}

/// One stream of client requests from the load generator (the caller `client`).
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The service requests are sent to.
    pub target: String,
    /// Where the load generator sits. Default: the first zone.
    pub from_zone: String,
    /// Default `GET`.
    pub method: String,
    /// Default `/`.
    pub path: String,
    pub headers: BTreeMap<String, String>,
    /// Request body size. Default 0.
    pub request_bytes: u64,
    pub load: Load,
    /// Default 0.
    pub start_ns: u64,
    /// `None`: until the end of the run.
    pub duration_ns: Option<u64>,
    /// Client timeout per request. Default 30s.
    pub timeout_ns: u64,
    /// Open a new connection (and handshake) for every request. Default false.
    pub new_connection_per_request: bool,
    /// Open loop: `true` sends at exponentially distributed gaps (a Poisson process
    /// at the profile's rate, as queueing theory assumes); `false` (the default,
    /// `uniform`) at evenly spaced times, as wrk2 and Fortio do.
    pub poisson_arrivals: bool,
}

/// Open loop (a rate, independent of responses) or closed loop (users waiting).
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    Open(RateProfile),
    /// `users` each send a request, wait for its response, think, repeat.
    Closed {
        users: u32,
        think_time: Dist,
    },
}

/// Requested rate over a workload's lifetime.
#[derive(Debug, Clone, PartialEq)]
pub enum RateProfile {
    Constant {
        rps: f64,
    },
    /// Linear from `from_rps` at the workload's start to `to_rps` at its end.
    Ramp {
        from_rps: f64,
        to_rps: f64,
    },
    /// `(at_ns, rps)`, `at_ns` increasing; 0 before the first step.
    Steps {
        steps: Vec<(u64, f64)>,
    },
    /// `mean + amplitude × sin(2π t / period)`, never below 0.
    Sine {
        mean_rps: f64,
        amplitude_rps: f64,
        period_ns: u64,
    },
}

impl RateProfile {
    /// The rate `t_ns` after the workload's start, for a workload lasting
    /// `duration_ns` (ramps use it; the others ignore it). Never negative.
    pub fn rate_at(&self, t_ns: u64, duration_ns: u64) -> f64 {
        let rate = match self {
            RateProfile::Constant { rps } => *rps,
            RateProfile::Ramp { from_rps, to_rps } => {
                if duration_ns == 0 {
                    *to_rps
                } else {
                    let f = (t_ns.min(duration_ns) as f64) / duration_ns as f64;
                    from_rps + (to_rps - from_rps) * f
                }
            }
            RateProfile::Steps { steps } => steps
                .iter()
                .take_while(|(at, _)| *at <= t_ns)
                .last()
                .map_or(0.0, |(_, r)| *r),
            RateProfile::Sine {
                mean_rps,
                amplitude_rps,
                period_ns,
            } => {
                if *period_ns == 0 {
                    *mean_rps
                } else {
                    let phase = (t_ns % period_ns) as f64 / *period_ns as f64;
                    mean_rps + amplitude_rps * (std::f64::consts::TAU * phase).sin()
                }
            }
        };
        rate.max(0.0)
    }
}

/// Something that happens to the system at a point in time.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at_ns: u64,
    /// When set, the fault is undone this long after `at_ns`.
    pub for_ns: Option<u64>,
    pub kind: FaultKind,
    /// The scenario line of the fault entry.
    pub line: u32,
}

/// What a fault does. `a`/`b` pairs are zones or services (see `docs/scenarios.md`).
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Crash the selected instances (`for`: restart them after).
    Kill(Selector),
    /// Restart the selected instances (down, then up with fresh state).
    Restart(Selector),
    /// Every instance and link of the zone goes down.
    ZoneOutage { zone: String },
    /// Messages between `a` and `b` are dropped (only `a` → `b` when `one_way`).
    Partition { a: String, b: String, one_way: bool },
    /// The latency between `a` and `b` becomes `latency`.
    LinkLatency { a: String, b: String, latency: Dist },
    /// The loss between `a` and `b` becomes `loss`.
    LinkLoss { a: String, b: String, loss: f64 },
    /// Messages between `a` and `b` are queued, then delivered on release.
    Hold { a: String, b: String },
    /// The CA answers no certificate request.
    CaOutage,
    /// The CA rotates its root: from `at` the bundle it hands out holds the old and a
    /// new root, while it still signs with the old one; from `at + overlap_ns / 2` it
    /// signs with the new root; at `at + overlap_ns` the old root leaves the bundle.
    /// Never undone (a rotation has no `for`).
    CaRotate { overlap_ns: u64 },
    /// The control plane pushes no configuration.
    ControlPlaneOutage,
    /// The mesh configuration is replaced by these sources.
    Config(Vec<ConfigSource>),
    /// The selected instances' clocks jump by `offset_ns` and drift by `drift_ppm`.
    ClockSkew {
        selector: Selector,
        offset_ns: i64,
        drift_ppm: f64,
    },
    /// The selected instances' application behaviour changes.
    App {
        selector: Selector,
        error_rate: Option<f64>,
        service_time: Option<Dist>,
    },
}

/// Which instances a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub service: String,
    /// `None`: every version.
    pub version: Option<String>,
    /// `None`: every zone.
    pub zone: Option<String>,
    /// `None`: every selected instance; else the first `count` (by instance order).
    pub count: Option<u32>,
}

/// An assertion checked against the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    /// As written.
    pub text: String,
    /// The scenario line.
    pub line: u32,
    pub expr: AssertExpr,
}
