//! DestinationRules → [`ClusterPolicy`]: the traffic policy of one destination cluster
//! (a host, or one subset of it) — load balancing, outlier detection, connection-pool
//! limits, the retry limit and client TLS — in the policy modules' types, with Istio's
//! and Envoy's defaults made explicit and every setting traced to its `file:line`.
//!
//! What it does, as istiod's cluster builder:
//!
//! * finds the host's DestinationRules with [`ConfigSet::destination_rules_for`] (an
//!   exact host beats a wildcard). Several rules for one host are merged as Istio
//!   merges them: the first (oldest) rule with a top-level `trafficPolicy` supplies it,
//!   and the first rule defining the subset supplies the subset;
//! * applies the top-level `trafficPolicy`, then the subset's, which replaces it **per
//!   sub-message** (`loadBalancer`, `connectionPool`, `outlierDetection`, `tls`,
//!   `retryBudget`), never field by field inside one (Istio's `MergeTrafficPolicy`);
//! * maps each field with Istio's rules: a zero or negative limit keeps the default,
//!   `consecutiveErrors` (deprecated) means gateway errors with the 5xx detector off,
//!   `minHealthPercent` becomes the panic threshold whenever outlier detection is
//!   configured, locality failover engages only with outlier detection, a retry budget
//!   replaces `maxRetries`.
//!
//! [`ClusterPolicy::applied`] says, one line per setting, where each value came from or
//! that it is a default, and notes what was read but is not acted on.
//!
//! What it does not do (each is noted in `applied` when set): `portLevelSettings`
//! (per-port policies are out of scope), rules with a `workloadSelector` (the client's
//! labels are not an input: they are skipped), locality `distribute`, `failover` and
//! `failoverPriority`, warmup, `tunnel`, `proxyProtocol`, TCP and HTTP timeouts and
//! keepalives, HTTP/2 upgrade, TLS certificates, SNI and SAN checks, `budgetInterval`,
//! cookie generation. Nor does it check `exportTo` (the client's namespace is not an
//! input), or decide auto mTLS: `client_tls: None` means "the rule sets no mode", to be
//! passed to [`decide_client_tls`](crate::security::decide_client_tls) per endpoint.

use std::collections::BTreeMap;
use std::fmt::{Debug, Display};

use crate::Locality;
use crate::config::model::destination_rule::{
    ClientTlsMode as ConfigTls, ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb,
    HttpSettings, LoadBalancerSettings, OutlierDetection, RetryBudget, SimpleLb, TrafficPolicy,
};
use crate::config::{ConfigSet, DestinationRule, Resource};
use crate::lb::{
    DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_MAXIMUM_RING_SIZE, DEFAULT_MINIMUM_RING_SIZE, HashPolicy,
    LbAlgorithm, LbPolicy,
};
use crate::outlier::OutlierDetectionPolicy;
use crate::pool::ConnectionPoolLimits;
use crate::retry::{RetryBudgetPolicy, RetryLimit};
use crate::security::ClientTlsMode;

/// The traffic policy of one destination cluster: a host, or one subset of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterPolicy {
    /// The destination host (FQDN).
    pub host: String,
    /// The subset, when the cluster is one.
    pub subset: Option<String>,
    /// The subset's labels: its endpoints carry all of them
    /// ([`select_subset`](crate::lb::select_subset)). Empty for the whole host, and when
    /// no rule defines the subset.
    pub subset_labels: BTreeMap<String, String>,
    /// Load balancing, with the panic threshold and locality failover.
    pub lb: LbPolicy,
    /// Outlier detection; `None` when not configured (Istio's default: no ejection).
    pub outlier: Option<OutlierDetectionPolicy>,
    /// Circuit-breaking limits; `pool.retry_limit` equals [`ClusterPolicy::retry_limit`].
    pub pool: ConnectionPoolLimits,
    /// What bounds concurrent retries: a retry budget, `maxRetries`, or Istio's default.
    pub retry_limit: RetryLimit,
    /// The rule's `tls.mode`; `None` when it sets none (auto mTLS decides).
    pub client_tls: Option<ClientTlsMode>,
    /// The rule's `tls` files, SNI and SAN checks (used by SIMPLE and MUTUAL, and the
    /// SANs by ISTIO_MUTUAL); default when it sets none.
    pub client_tls_files: ClientTlsFiles,
    /// `file:line` of the DestinationRule applied (the first, when several are merged).
    pub origin: Option<String>,
    /// Provenance, one line per setting: where it came from, or that it is a default;
    /// `note:` lines say what was read but not applied.
    pub applied: Vec<String>,
}

impl ClusterPolicy {
    /// What Istio programs for a destination no DestinationRule covers: LEAST_REQUEST,
    /// no outlier detection, no locality failover, unlimited pool and retries, client
    /// TLS left to auto mTLS. `applied` is empty.
    pub fn istio_default(host_fqdn: &str, subset: Option<&str>) -> Self {
        ClusterPolicy {
            host: host_fqdn.to_owned(),
            subset: subset.map(str::to_owned),
            subset_labels: BTreeMap::new(),
            lb: LbPolicy::default(),
            outlier: None,
            pool: ConnectionPoolLimits::default(),
            retry_limit: RetryLimit::default(),
            client_tls: None,
            client_tls_files: ClientTlsFiles::default(),
            origin: None,
            applied: Vec::new(),
        }
    }
}

/// The traffic policy for `host_fqdn` (and `subset`, if given) under the
/// DestinationRules of `set`, for a client in locality `client` (needed for locality
/// failover; `None` leaves it off).
pub fn cluster_policy(
    set: &ConfigSet,
    host_fqdn: &str,
    subset: Option<&str>,
    client: Option<&Locality>,
) -> ClusterPolicy {
    let mut out = ClusterPolicy::istio_default(host_fqdn, subset);
    let mut note = Vec::new();
    let (rules, selected): (Vec<_>, Vec<_>) = set
        .destination_rules_for(host_fqdn)
        .into_iter()
        .partition(|dr| dr.spec.workload_selector.is_none());
    for dr in selected {
        let (key, at) = (dr.key(), doc_origin(dr));
        note.push(format!(
            "note: DestinationRule {key} ({at}) has a workloadSelector; the client's labels \
             are not an input here: skipped"
        ));
    }
    let Some(first) = rules.first() else {
        note.push(format!(
            "no DestinationRule for {host_fqdn}: Istio defaults (LEAST_REQUEST, no outlier \
             detection, no locality failover, unlimited pool: connections, pending and \
             requests 2^32-1, maxRetries 2^32-1, client TLS by auto mTLS)"
        ));
        if let Some(name) = subset {
            note.push(format!(
                "note: no DestinationRule defines subset {name}: Envoy has no such cluster \
                 (requests fail with 503 NC)"
            ));
        }
        out.applied = note;
        return out;
    };
    out.origin = Some(doc_origin(first));
    let (key, at) = (first.key(), doc_origin(first));
    note.push(format!("DestinationRule {key} ({at}) for {host_fqdn}"));
    let top = rules.iter().find_map(|dr| {
        At::new(
            dr.spec.traffic_policy.as_ref()?,
            dr,
            "spec.trafficPolicy".into(),
        )
    });
    for dr in &rules[1..] {
        let ignored = dr.spec.traffic_policy.is_some()
            && top.as_ref().is_some_and(|t| !std::ptr::eq(t.res, *dr));
        let (key, at) = (dr.key(), doc_origin(dr));
        let policy =
            ignored.then_some("; its trafficPolicy is ignored (an earlier rule's applies)");
        note.push(format!(
            "DestinationRule {key} ({at}) for the same host: merged as Istio, its new \
             subsets are added{}",
            policy.unwrap_or_default()
        ));
    }
    let mut sub = None;
    if let Some(name) = subset {
        let found = rules.iter().find_map(|dr| {
            let i = dr.spec.subsets.iter().position(|s| s.name == name)?;
            Some((*dr, i, &dr.spec.subsets[i]))
        });
        if let Some((res, i, s)) = found {
            let path = format!("spec.subsets[{i}]");
            let (labels, at) = (&s.labels, res.locate(&path));
            note.push(format!("subset {name}: labels {labels:?} ({at})"));
            out.subset_labels = s.labels.clone();
            let path = format!("{path}.trafficPolicy");
            sub = (s.traffic_policy.as_ref()).and_then(|value| At::new(value, res, path));
        } else {
            note.push(format!(
                "note: no DestinationRule for {host_fqdn} defines subset {name}: Envoy has no \
                 such cluster (requests fail with 503 NC); the host's policy is shown"
            ));
        }
    }
    let mut c = Merge { top, sub, note };
    c.note_port_level_settings();
    let lb = c.pick("loadBalancer", |p| p.load_balancer.as_ref());
    out.lb = LbPolicy::new(algorithm(lb.as_ref(), &mut c.note));
    let od = c.pick("outlierDetection", |p| p.outlier_detection.as_ref());
    out.outlier = outlier(od.as_ref(), &mut c.note);
    c.note.push(match &out.outlier {
        Some(p) => {
            out.lb.panic_threshold_percent = p.min_health_percent;
            let pct = p.min_health_percent;
            format!(
                "panic threshold = {pct}% (minHealthPercent: Istio sets it with outlier detection)"
            )
        }
        None => "panic threshold: default 50% (Envoy's; no outlier detection)".to_owned(),
    });
    let engage = out.outlier.is_some();
    locality(&mut out.lb, lb.as_ref(), engage, client, &mut c.note);
    let cp = c.pick("connectionPool", |p| p.connection_pool.as_ref());
    let (pool, max_retries) = pool(cp.as_ref(), &mut c.note);
    let budget = c.pick("retryBudget", |p| p.retry_budget.as_ref());
    out.retry_limit = retry_limit(budget.as_ref(), max_retries, &mut c.note);
    out.pool = pool;
    out.pool.retry_limit = out.retry_limit;
    let tls = c.pick("tls", |p| p.tls.as_ref());
    out.client_tls = client_tls(tls.as_ref(), &mut c.note);
    if let Some(t) = &tls {
        out.client_tls_files = ClientTlsFiles {
            client_certificate: t.value.client_certificate.clone(),
            private_key: t.value.private_key.clone(),
            ca_certificates: t.value.ca_certificates.clone(),
            sni: t.value.sni.clone(),
            subject_alt_names: t.value.subject_alt_names.clone(),
            insecure_skip_verify: t.value.insecure_skip_verify.unwrap_or(false),
        };
    }
    let tunnel = c.pick("tunnel", |p| p.tunnel.as_ref()).map(|t| t.loc(""));
    let proxy = (c.pick("proxyProtocol", |p| p.proxy_protocol.as_ref())).map(|t| t.loc(""));
    for (field, at) in [("tunnel", tunnel), ("proxyProtocol", proxy)] {
        if let Some(at) = at {
            c.note.push(format!("note: {field} ({at}) is not modelled"));
        }
    }
    out.applied = c.note;
    out
}

/// `file:line` where a resource's document starts.
fn doc_origin<T>(res: &Resource<T>) -> String {
    format!("{}:{}", res.origin.file, res.origin.line)
}

/// A (part of a) `trafficPolicy` as applied, and where it is written.
struct At<'a, T> {
    value: &'a T,
    res: &'a Resource<DestinationRule>,
    /// Its field path (`spec.subsets[1].trafficPolicy.loadBalancer`).
    path: String,
}

impl<'a, T> At<'a, T> {
    /// `Some`, for use in `Option` chains.
    fn new(value: &'a T, res: &'a Resource<DestinationRule>, path: String) -> Option<Self> {
        Some(At { value, res, path })
    }

    /// `file:line` of `field` inside it (`""`: of itself).
    fn loc(&self, field: &str) -> String {
        match field {
            "" => self.res.locate(&self.path),
            _ => self.res.locate(&format!("{}.{field}", self.path)),
        }
    }

    /// The path from `trafficPolicy` on (`loadBalancer`).
    fn short(&self) -> &str {
        (self.path.rsplit_once("trafficPolicy.")).map_or(&self.path, |(_, p)| p)
    }

    /// `<path>.<field> = <value> (<file:line>)`.
    fn set(&self, field: &str, value: impl Display) -> String {
        format!("{}.{field} = {value} ({})", self.short(), self.loc(field))
    }

    /// A note-taker for fields of this sub-message.
    fn notes<'n>(&'n self, out: &'n mut Vec<String>) -> Notes<'n, T> {
        Notes { at: self, out }
    }
}

/// Notes the fields of one sub-message into [`ClusterPolicy::applied`].
struct Notes<'n, T> {
    at: &'n At<'n, T>,
    out: &'n mut Vec<String>,
}

impl<T> Notes<'_, T> {
    /// `field`'s value, noted with its `file:line`; when unset, `default`, noted as such.
    fn get<V: Debug>(&mut self, field: &str, value: Option<V>, default: V) -> V {
        self.out.push(match &value {
            Some(v) => self.at.set(field, format!("{v:?}")),
            None => format!("{}.{field}: default {default:?}", self.at.short()),
        });
        value.unwrap_or(default)
    }

    fn set(&mut self, field: &str, value: impl Display) {
        self.out.push(self.at.set(field, value));
    }

    fn push(&mut self, line: String) {
        self.out.push(line);
    }
}

/// The top-level and subset `trafficPolicy`, merged per sub-message on demand.
struct Merge<'a> {
    top: Option<At<'a, TrafficPolicy>>,
    sub: Option<At<'a, TrafficPolicy>>,
    note: Vec<String>,
}

impl<'a> Merge<'a> {
    /// The sub-message `name` in force: the subset's when it sets one (replacing the
    /// top-level one whole), else the top-level one.
    fn pick<T>(
        &mut self,
        name: &str,
        get: impl Fn(&'a TrafficPolicy) -> Option<&'a T>,
    ) -> Option<At<'a, T>> {
        let from = |lv: &At<'a, TrafficPolicy>| {
            At::new(get(lv.value)?, lv.res, format!("{}.{name}", lv.path))
        };
        let (sub, top) = (
            self.sub.as_ref().and_then(from),
            self.top.as_ref().and_then(from),
        );
        if let (Some(s), Some(t)) = (&sub, &top) {
            let (s, t) = (s.loc(""), t.loc(""));
            self.note.push(format!(
                "{name}: the subset's ({s}) replaces the top-level one ({t}) as a whole"
            ));
        }
        sub.or(top)
    }

    fn note_port_level_settings(&mut self) {
        for lv in [&self.top, &self.sub].into_iter().flatten() {
            if !lv.value.port_level_settings.is_empty() {
                let at = lv.loc("portLevelSettings");
                self.note.push(format!(
                    "note: portLevelSettings ({at}) not applied: per-port policies are out of scope"
                ));
            }
        }
    }
}

/// A positive `int32` limit; Istio ignores zero and negative ones.
fn positive(v: Option<i32>) -> Option<u32> {
    v.and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0)
}

fn algorithm(lb: Option<&At<'_, LoadBalancerSettings>>, note: &mut Vec<String>) -> LbAlgorithm {
    const DEFAULT: &str = "Istio default LEAST_REQUEST (power of two choices)";
    let Some(lb) = lb else {
        note.push(format!("loadBalancer: not set: {DEFAULT}"));
        return LbAlgorithm::default();
    };
    if lb.value.warmup.is_some() || lb.value.warmup_duration_secs.is_some() {
        note.push(format!(
            "note: loadBalancer warmup ({}) is not modelled",
            lb.loc("")
        ));
    }
    if let Some(ch) = &lb.value.consistent_hash {
        if lb.value.simple.is_some() {
            let at = lb.loc("simple");
            note.push(format!(
                "note: loadBalancer.simple ({at}) ignored: consistentHash is set"
            ));
        }
        return consistent_hash(lb, ch, note);
    }
    let Some(simple) = lb.value.simple else {
        note.push(format!("loadBalancer.simple: not set: {DEFAULT}"));
        return LbAlgorithm::default();
    };
    let least = LbAlgorithm::least_request();
    let (algorithm, what) = match simple {
        SimpleLb::RoundRobin => (
            LbAlgorithm::RoundRobin,
            "ROUND_ROBIN: smooth weighted round robin",
        ),
        SimpleLb::LeastRequest => (least, "LEAST_REQUEST: power of two choices"),
        SimpleLb::LeastConn => (least, "LEAST_CONN: alias of LEAST_REQUEST"),
        SimpleLb::Random => (LbAlgorithm::Random, "RANDOM: weighted random"),
        SimpleLb::Passthrough => (
            least,
            "PASSTHROUGH: Envoy forwards to the original destination address; not modelled, \
             balanced with Istio's default LEAST_REQUEST",
        ),
        SimpleLb::Unspecified => (least, "UNSPECIFIED: Istio default LEAST_REQUEST"),
    };
    note.push(lb.set("simple", what));
    algorithm
}

fn consistent_hash(
    lb: &At<'_, LoadBalancerSettings>,
    ch: &ConsistentHashLb,
    note: &mut Vec<String>,
) -> LbAlgorithm {
    use HashPolicy::{Cookie, Header, QueryParameter, SourceIp};
    let field = |f: &str| format!("consistentHash.{f}");
    let cookie = ch.http_cookie.as_ref();
    let source_ip = ch.use_source_ip == Some(true);
    let keys = [
        (
            "httpHeaderName",
            ch.http_header_name.clone().map(|name| Header { name }),
        ),
        (
            "httpCookie",
            cookie.map(|c| Cookie {
                name: c.name.clone(),
            }),
        ),
        ("useSourceIp", source_ip.then_some(SourceIp)),
        (
            "httpQueryParameterName",
            ch.http_query_parameter_name
                .clone()
                .map(|name| QueryParameter { name }),
        ),
    ];
    let Some((key, hash)) = keys.into_iter().find_map(|(k, h)| Some((k, h?))) else {
        let at = lb.loc("consistentHash");
        note.push(format!(
            "loadBalancer.consistentHash ({at}) has no hash key: Envoy picks at random"
        ));
        return LbAlgorithm::Random;
    };
    let mut n = lb.notes(note);
    n.set(
        &field(key),
        format!("{hash:?}; retries stay on the hashed endpoint"),
    );
    if let Some(ttl) = cookie.and_then(|c| c.ttl) {
        let at = lb.loc(&field("httpCookie"));
        n.push(format!(
            "note: httpCookie generation (ttl {ttl:?}, {at}) is not modelled"
        ));
    }
    if let Some(maglev) = &ch.maglev {
        let size = maglev.table_size.filter(|&t| t > 0);
        let table_size = n.get(&field("maglev.tableSize"), size, DEFAULT_MAGLEV_TABLE_SIZE);
        return LbAlgorithm::Maglev { hash, table_size };
    }
    let ring = ch.ring_hash.as_ref();
    let legacy = ch.minimum_ring_size.filter(|&m| m > 0 && ring.is_none());
    let size = ring.and_then(|r| r.minimum_ring_size).filter(|&m| m > 0);
    let minimum_ring_size = match legacy {
        Some(m) => n.get(&field("minimumRingSize"), Some(m), 0),
        None => n.get(
            &field("ringHash.minimumRingSize"),
            size,
            DEFAULT_MINIMUM_RING_SIZE,
        ),
    };
    let maximum_ring_size = DEFAULT_MAXIMUM_RING_SIZE;
    LbAlgorithm::RingHash {
        hash,
        minimum_ring_size,
        maximum_ring_size,
    }
}

/// Istio's locality load balancing: on unless `localityLbSetting.enabled: false`
/// (meshConfig's setting is assumed unset); failover only with outlier detection.
fn locality(
    lb: &mut LbPolicy,
    settings: Option<&At<'_, LoadBalancerSettings>>,
    outlier_configured: bool,
    client: Option<&Locality>,
    note: &mut Vec<String>,
) {
    let setting = settings.and_then(|s| {
        Some((
            s.loc("localityLbSetting"),
            s.value.locality_lb_setting.as_ref()?,
        ))
    });
    let source = match setting {
        Some((at, l)) if l.enabled == Some(false) => {
            note.push(format!(
                "localityLbSetting.enabled = false ({at}): no locality failover"
            ));
            return;
        }
        Some((at, l)) if !l.distribute.is_empty() => {
            note.push(format!(
                "note: localityLbSetting.distribute ({at}) is not modelled; Istio applies it \
                 instead of failover, so locality failover is off"
            ));
            return;
        }
        Some((at, l)) => {
            if !l.failover.is_empty() || !l.failover_priority.is_empty() {
                note.push(format!(
                    "note: localityLbSetting failover/failoverPriority ({at}) not modelled: \
                     the default order (subzone, zone, region, anywhere) is used"
                ));
            }
            format!("localityLbSetting ({at})")
        }
        None => "locality load balancing (on by default in Istio)".to_owned(),
    };
    let Some(client) = client else {
        note.push(format!(
            "{source}: client locality not given: locality failover not engaged"
        ));
        return;
    };
    *lb = std::mem::take(lb).with_locality_failover(client.clone(), outlier_configured);
    let (region, zone, subzone) = (&client.region, &client.zone, &client.subzone);
    note.push(match lb.locality_failover {
        Some(_) => format!(
            "{source}: locality failover engaged for a client in {region}/{zone}/{subzone} \
             (outlierDetection is configured)"
        ),
        None => format!(
            "{source}: locality failover not engaged: Istio engages it only with \
             outlierDetection configured"
        ),
    });
}

fn outlier(
    od: Option<&At<'_, OutlierDetection>>,
    note: &mut Vec<String>,
) -> Option<OutlierDetectionPolicy> {
    let Some(od) = od else {
        note.push("outlierDetection: not set: no outlier detection (Istio default)".into());
        return None;
    };
    let (v, mut p) = (od.value, OutlierDetectionPolicy::default());
    let at = od.loc("");
    note.push(format!(
        "outlierDetection ({at}); unset fields take Istio's and Envoy's defaults; 0 is off"
    ));
    let mut n = od.notes(note);
    let legacy = positive(v.consecutive_errors);
    if let Some(e) = legacy {
        (p.consecutive_gateway_errors, p.consecutive_5xx) = (Some(e), None);
        let what = format!("{e} (deprecated): gateway errors, 5xx detector off, as Istio");
        n.set("consecutiveErrors", what);
    }
    let on = |e: u32| (e > 0).then_some(e);
    let (c5, gateway) = (v.consecutive_5xx_errors, v.consecutive_gateway_errors);
    if legacy.is_none() || c5.is_some() {
        let d5 = p.consecutive_5xx.unwrap_or(0);
        p.consecutive_5xx = on(n.get("consecutive5xxErrors", c5, d5));
    }
    if legacy.is_none() || gateway.is_some() {
        let dg = p.consecutive_gateway_errors.unwrap_or(0);
        p.consecutive_gateway_errors = on(n.get("consecutiveGatewayErrors", gateway, dg));
    }
    p.interval = n.get("interval", v.interval, p.interval);
    p.base_ejection_time = n.get(
        "baseEjectionTime",
        v.base_ejection_time,
        p.base_ejection_time,
    );
    let max = v.max_ejection_percent.map(|m| m.0).filter(|&m| m > 0);
    p.max_ejection_percent = n.get("maxEjectionPercent", max, p.max_ejection_percent);
    let min = v.min_health_percent.map(|m| m.0);
    p.min_health_percent = n.get("minHealthPercent", min, p.min_health_percent);
    let local = v.consecutive_local_origin_failures;
    if v.split_external_local_origin_errors == Some(true) {
        p.split_external_local_origin_errors = true;
        n.set("splitExternalLocalOriginErrors", true);
        let (local, dl) = (
            local.filter(|&l| l > 0),
            p.consecutive_local_origin_failures,
        );
        let local = n.get("consecutiveLocalOriginFailures", local, dl.unwrap_or(0));
        p.consecutive_local_origin_failures = on(local);
    } else if local.is_some() {
        let at = od.loc("consecutiveLocalOriginFailures");
        n.push(format!(
            "note: outlierDetection.consecutiveLocalOriginFailures ({at}) ignored without \
             splitExternalLocalOriginErrors, as Istio"
        ));
    }
    Some(p)
}

/// Circuit-breaking limits, and the positive `maxRetries` with its `file:line` (the
/// retry limit is decided with `retryBudget`).
fn pool(
    cp: Option<&At<'_, ConnectionPoolSettings>>,
    note: &mut Vec<String>,
) -> (ConnectionPoolLimits, Option<(u32, String)>) {
    let Some(cp) = cp else {
        note.push(
            "connectionPool: not set: Istio defaults: connections, pending requests and \
             requests 2^32-1 (unlimited), no per-connection limit"
                .into(),
        );
        return (ConnectionPoolLimits::default(), None);
    };
    let (tcp, http) = (cp.value.tcp.as_ref(), cp.value.http.as_ref());
    let h = |f: fn(&HttpSettings) -> Option<i32>| positive(http.and_then(f));
    let mut n = cp.notes(note);
    n.push(format!(
        "connectionPool ({}); unset limits are unlimited, as Istio",
        cp.loc("")
    ));
    let max = u32::MAX;
    let connections = positive(tcp.and_then(|t| t.max_connections));
    let limits = ConnectionPoolLimits {
        max_connections: n.get("tcp.maxConnections", connections, max),
        max_pending_requests: n.get(
            "http.http1MaxPendingRequests",
            h(|h| h.http1_max_pending_requests),
            max,
        ),
        max_requests: n.get("http.http2MaxRequests", h(|h| h.http2_max_requests), max),
        max_requests_per_connection: n.get(
            "http.maxRequestsPerConnection",
            h(|h| h.max_requests_per_connection),
            0,
        ),
        retry_limit: RetryLimit::default(),
    };
    let max_retries = h(|h| h.max_retries).map(|n| (n, cp.loc("http.maxRetries")));
    let unmodelled = tcp.is_some_and(|t| {
        t.connect_timeout.is_some()
            || t.tcp_keepalive.is_some()
            || t.max_connection_duration.is_some()
            || t.idle_timeout.is_some()
    }) || http.is_some_and(|h| {
        h.idle_timeout.is_some()
            || h.h2_upgrade_policy.is_some()
            || h.use_client_protocol.is_some()
            || h.max_concurrent_streams.is_some()
    });
    if unmodelled {
        note.push(format!(
            "note: connectionPool timeouts, keepalives, h2UpgradePolicy, useClientProtocol \
             and maxConcurrentStreams ({}) are not modelled",
            cp.loc("")
        ));
    }
    (limits, max_retries)
}

/// `retryBudget` replaces `maxRetries` (Envoy); without either, Istio's unlimited default.
fn retry_limit(
    budget: Option<&At<'_, RetryBudget>>,
    max_retries: Option<(u32, String)>,
    note: &mut Vec<String>,
) -> RetryLimit {
    let Some(b) = budget else {
        let (limit, line) = match max_retries {
            Some((n, at)) => (
                RetryLimit::MaxRetries(n),
                format!("maxRetries = {n} ({at})"),
            ),
            None => (
                RetryLimit::default(),
                "no retryBudget or maxRetries: Istio default maxRetries 2^32-1 (unlimited; \
                 Envoy's own is 3)"
                    .to_owned(),
            ),
        };
        note.push(format!("retries: {line}"));
        return limit;
    };
    let d = RetryBudgetPolicy::default();
    note.push(format!(
        "retryBudget ({}) replaces maxRetries, as Envoy",
        b.loc("")
    ));
    let mut n = b.notes(note);
    let percent = n.get("percent", b.value.percent.map(|p| p.0), d.percent);
    let min = n.get(
        "minRetryConcurrency",
        b.value.min_retry_concurrency,
        d.min_retry_concurrency,
    );
    if let Some((n, at)) = max_retries {
        note.push(format!(
            "note: connectionPool.http.maxRetries = {n} ({at}) ignored: the retry budget \
             replaces it, as Envoy"
        ));
    }
    if b.value.budget_interval.is_some() {
        let at = b.loc("budgetInterval");
        note.push(format!(
            "note: retryBudget.budgetInterval ({at}) is not modelled"
        ));
    }
    RetryLimit::Budget(RetryBudgetPolicy {
        percent,
        min_retry_concurrency: min,
    })
}

fn client_tls(
    tls: Option<&At<'_, ClientTlsSettings>>,
    note: &mut Vec<String>,
) -> Option<ClientTlsMode> {
    let Some(tls) = tls else {
        note.push(
            "tls: not set: auto mTLS decides per endpoint (ISTIO_MUTUAL to sidecars, \
             plaintext otherwise)"
                .into(),
        );
        return None;
    };
    let t = tls.value;
    let (mode, name) = match t.mode {
        Some(ConfigTls::Disable) => (ClientTlsMode::Disable, "DISABLE"),
        Some(ConfigTls::Simple) => (ClientTlsMode::Simple, "SIMPLE"),
        Some(ConfigTls::Mutual) => (ClientTlsMode::Mutual, "MUTUAL"),
        Some(ConfigTls::IstioMutual) => (ClientTlsMode::IstioMutual, "ISTIO_MUTUAL"),
        None => (
            ClientTlsMode::Disable,
            "DISABLE (no mode: the proto default)",
        ),
    };
    note.push(tls.set("mode", name));
    let credentials = [
        &t.client_certificate,
        &t.ca_certificates,
        &t.credential_name,
        &t.sni,
    ];
    if credentials.iter().any(|f| f.is_some()) || !t.subject_alt_names.is_empty() {
        let at = tls.loc("");
        note.push(format!(
            "note: tls certificates, SNI and SAN checks ({at}) are used by the real \
             sidecar only; the simulator does not model them"
        ));
    }
    Some(mode)
}

/// A DestinationRule's `tls` files and checks, as written (paths are the sidecar's).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientTlsFiles {
    /// `clientCertificate` (MUTUAL): PEM chain file.
    pub client_certificate: Option<String>,
    /// `privateKey` (MUTUAL): PEM key file.
    pub private_key: Option<String>,
    /// `caCertificates` (SIMPLE, MUTUAL): PEM roots to verify the server with.
    pub ca_certificates: Option<String>,
    /// `sni`: the server name sent (and verified for SIMPLE/MUTUAL).
    pub sni: Option<String>,
    /// `subjectAltNames`: the server must present one of these.
    pub subject_alt_names: Vec<String>,
    /// `insecureSkipVerify`.
    pub insecure_skip_verify: bool,
}

#[cfg(test)]
#[path = "traffic_tests.rs"]
mod tests;
