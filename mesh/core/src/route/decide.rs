//! The routing decision for one request: which VirtualService and rule, which
//! destination, and everything the rule asks of the proxy (rewrite, timeout, retries,
//! fault, mirror, headers) — with a trace that says why.
//!
//! Call [`decide`] once per request, on the client side (outbound sidecar or gateway).
//! It draws from `rng` only for weighted splits, fault percentages and mirror
//! percentages, in that order, so a seeded driver gets the same decisions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use crate::cost::{Cost, CostKind};
use crate::retry::RetryPolicy;

use super::table::{
    Destination, HeaderOps, HttpMatch, HttpRoute, Redirect, Rewrite, RouteAction, RouteRetries,
    RouteTable, StringMatch, ValueMatch, WeightedDestination,
};

/// The default cluster domain for short-name expansion.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// A request as the routing decision sees it. Header names must be lower case.
#[derive(Debug, Clone)]
pub struct RouteRequest<'a> {
    /// The `Host`/`:authority` as sent, possibly with a port and possibly short
    /// (`reviews`, `reviews:9080`, `reviews.default`).
    pub authority: &'a str,
    pub method: &'a str,
    /// Path with optional query string.
    pub path: &'a str,
    pub scheme: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    /// Labels of the calling workload (for `sourceLabels`).
    pub source_labels: &'a BTreeMap<String, String>,
    /// Namespace of the calling workload: short hosts expand in it.
    pub source_namespace: &'a str,
    /// `mesh` for a sidecar; a gateway's `namespace/name` (or `name`) for a gateway.
    pub gateway: &'a str,
}

/// What the proxy should do with the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RouteOutcome {
    /// No VirtualService claims the host: send it to the host itself (Istio's default
    /// route), with Istio's default retries and no timeout.
    Passthrough {
        destination: Destination,
        retries: RouteRetries,
    },
    /// A rule matched and forwards the request.
    Forward(Box<Forward>),
    Redirect(Redirect),
    DirectResponse {
        status: u16,
        body: Option<String>,
    },
    /// A VirtualService claims the host but no rule matched: the client-side proxy
    /// answers 404 (Envoy response flag `NR`).
    NoRoute,
}

/// The details of a forwarding decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forward {
    /// Every destination of the rule with its weight (a split has several).
    pub destinations: Arc<[WeightedDestination]>,
    /// Index into `destinations` of the one chosen for this request.
    pub chosen: usize,
    pub rewrite: Option<Rewrite>,
    /// The path after rewriting (`None` when not rewritten).
    pub rewritten_path: Option<String>,
    /// Route timeout bounding all tries; `None` means no timeout (Istio's default).
    pub timeout: Option<Duration>,
    pub retries: RouteRetries,
    /// Injected delay for this request, if the draw said so.
    pub delay: Option<Duration>,
    /// Injected abort status for this request, if the draw said so.
    pub abort: Option<u16>,
    /// Mirrors that this request is copied to (after their percentage draws).
    pub mirrors: Vec<Destination>,
    /// Route-level then destination-level header operations.
    pub headers: Arc<HeaderOps>,
}

/// What a driver sends upstream for a decision that forwards the request: the
/// cluster, the retry policy and timeout, the injected fault, the rewritten path and
/// the mirrors. Both the simulator and the proxy build their try loop from this.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamPlan {
    /// The destination host (FQDN) and subset: the cluster.
    pub host: String,
    pub subset: Option<String>,
    /// What the route's `retries` stand for ([`RetryPolicy::from_route`]).
    pub retry: RetryPolicy,
    /// Route timeout bounding all tries; `None` means none.
    pub timeout: Option<Duration>,
    /// Injected delay and abort for this request, if the draws said so.
    pub delay: Option<Duration>,
    pub abort: Option<u16>,
    /// The path after rewriting, when the route rewrites it.
    pub rewritten_path: Option<String>,
    /// Mirrors this request is copied to (after their percentage draws).
    pub mirrors: Vec<Destination>,
}

impl UpstreamPlan {
    /// A plain forward to (`host`, `subset`): no retries, timeout, fault or mirror.
    pub fn direct(host: impl Into<String>, subset: Option<String>) -> Self {
        UpstreamPlan {
            host: host.into(),
            subset,
            retry: RetryPolicy::disabled(),
            timeout: None,
            delay: None,
            abort: None,
            rewritten_path: None,
            mirrors: Vec::new(),
        }
    }
}

impl RouteOutcome {
    /// The upstream plan of a forwarding or passthrough decision; `None` when the
    /// sidecar answers itself (redirect, direct response, no route).
    pub fn upstream(&self) -> Option<UpstreamPlan> {
        match self {
            RouteOutcome::Passthrough {
                destination,
                retries,
            } => Some(UpstreamPlan {
                retry: RetryPolicy::from_route(retries),
                ..UpstreamPlan::direct(destination.host.clone(), None)
            }),
            RouteOutcome::Forward(f) => {
                let d = f.destination();
                Some(UpstreamPlan {
                    host: d.host.clone(),
                    subset: d.subset.clone(),
                    retry: RetryPolicy::from_route(&f.retries),
                    timeout: f.timeout,
                    delay: f.delay,
                    abort: f.abort,
                    rewritten_path: f.rewritten_path.clone(),
                    mirrors: f.mirrors.clone(),
                })
            }
            RouteOutcome::Redirect(_)
            | RouteOutcome::DirectResponse { .. }
            | RouteOutcome::NoRoute => None,
        }
    }
}

impl Forward {
    /// The destination this request goes to.
    pub fn destination(&self) -> &Destination {
        &self.destinations[self.chosen].destination
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RouteTrace {
    /// The host after expansion (`reviews.default.svc.cluster.local`).
    pub host: String,
    /// How the host found its VirtualService.
    pub host_match: HostMatch,
    /// `namespace/name` of the VirtualService used.
    pub virtual_service: Option<Arc<str>>,
    /// Index of the matched `http` rule and its name.
    pub rule: Option<usize>,
    pub rule_name: Option<String>,
    /// Which `match` block matched (index), if the rule had any.
    pub match_index: Option<usize>,
    /// Source location of the rule.
    pub origin: Option<Arc<str>>,
    /// Rules skipped before the match, and why (only with `explain`).
    pub skipped: Vec<SkippedRule>,
    /// Other VirtualServices that also claim the host but were not used.
    pub shadowed: Vec<String>,
}

/// How a host found its VirtualService.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "kind", content = "pattern", rename_all = "snake_case")]
pub enum HostMatch {
    /// No VirtualService claims the host.
    #[default]
    None,
    Exact,
    /// A wildcard host, e.g. `*.example.com` (`*` alone matches everything).
    Wildcard(Arc<str>),
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::None => f.write_str("none"),
            HostMatch::Exact => f.write_str("exact"),
            HostMatch::Wildcard(p) => write!(f, "wildcard {p}"),
        }
    }
}

/// A rule that did not match, and the first condition that failed in each block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedRule {
    pub rule: usize,
    pub name: Option<String>,
    pub reasons: Vec<String>,
}

/// A decision, its trace, and what making it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteDecision {
    pub outcome: RouteOutcome,
    pub trace: RouteTrace,
    /// `route_match`, with the request metadata examined (authority, path, headers)
    /// as bytes: the simulator charges it to the client-side proxy's CPU.
    pub cost: Cost,
}

/// Splits `host[:port]`, expands short names in `namespace`, lower-cases.
pub fn expand_authority(authority: &str, namespace: &str) -> (String, Option<u16>) {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
            Ok(port) => (h, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let dots = host.matches('.').count();
    let fqdn = if host.parse::<std::net::IpAddr>().is_ok() || host.ends_with(CLUSTER_DOMAIN) {
        host
    } else if dots == 0 {
        format!("{host}.{namespace}.{CLUSTER_DOMAIN}")
    } else if dots == 1 && !host.contains(".svc") && !looks_external(&host) {
        format!("{host}.{CLUSTER_DOMAIN}")
    } else if host.ends_with(".svc") {
        format!("{host}.cluster.local")
    } else {
        host
    };
    (fqdn, port)
}

/// `name.namespace` vs a public name like `example.com`: a two-label host whose last
/// label is a common public suffix is left alone.
fn looks_external(host: &str) -> bool {
    let tld = host.rsplit('.').next().unwrap_or("");
    matches!(
        tld,
        "com" | "org" | "net" | "io" | "dev" | "edu" | "gov" | "local" | "internal" | "test"
    )
}

/// Decides what to do with `req`. With `explain`, the trace lists every skipped rule
/// and why (this allocates; leave it off on hot paths).
pub fn decide(
    table: &RouteTable,
    req: &RouteRequest<'_>,
    rng: &mut impl Rng,
    explain: bool,
) -> RouteDecision {
    let (host, port) = expand_authority(req.authority, req.source_namespace);
    let cost = Cost::with_bytes(CostKind::RouteMatch, examined_bytes(req));
    let mut trace = RouteTrace::default();
    let Some((index, how)) = lookup(table, &host, req.gateway, explain, &mut trace) else {
        trace.host = host.clone();
        return RouteDecision {
            outcome: RouteOutcome::Passthrough {
                destination: Destination {
                    host,
                    subset: None,
                    port,
                },
                retries: RouteRetries::istio_default(),
            },
            trace,
            cost,
        };
    };
    trace.host = host;
    trace.host_match = how;
    let vs = &table.services[index];
    trace.virtual_service = Some(table.ids[index].clone());
    let (path, query) = req.path.split_once('?').unwrap_or((req.path, ""));
    for (i, rule) in vs.http.iter().enumerate() {
        let mut reasons = Vec::new();
        let matched = if rule.matches.is_empty() {
            Some(None)
        } else {
            rule.matches.iter().enumerate().find_map(|(m, block)| {
                match check_block(block, req, path, query, port) {
                    Ok(()) => Some(Some(m)),
                    Err(miss) => {
                        if explain {
                            reasons.push(format!("match[{m}]: {}", miss.describe()));
                        }
                        None
                    }
                }
            })
        };
        match matched {
            Some(match_index) => {
                trace.rule = Some(i);
                trace.rule_name = rule.name.clone();
                trace.match_index = match_index;
                trace.origin = rule.origin.clone();
                let outcome = apply(rule, match_index, path, query, rng);
                return RouteDecision {
                    outcome,
                    trace,
                    cost,
                };
            }
            None if explain => trace.skipped.push(SkippedRule {
                rule: i,
                name: rule.name.clone(),
                reasons,
            }),
            None => {}
        }
    }
    RouteDecision {
        outcome: RouteOutcome::NoRoute,
        trace,
        cost,
    }
}

/// The request metadata a route match reads: authority, path and headers.
fn examined_bytes(req: &RouteRequest<'_>) -> u64 {
    let headers: usize = req.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    (req.authority.len() + req.path.len() + req.method.len() + headers) as u64
}

fn lookup(
    table: &RouteTable,
    host: &str,
    gateway: &str,
    explain: bool,
    trace: &mut RouteTrace,
) -> Option<(usize, HostMatch)> {
    if let Some(indices) = table.exact.get(host) {
        let mut bound = indices
            .iter()
            .copied()
            .filter(|&i| table.services[i].bound_to(gateway));
        if let Some(first) = bound.next() {
            if explain {
                trace.shadowed = bound.map(|i| table.ids[i].to_string()).collect();
            }
            return Some((first, HostMatch::Exact));
        }
    }
    for (suffix, i) in &table.wildcards {
        let vs = &table.services[*i];
        if (suffix.is_empty() || host.ends_with(suffix.as_str())) && vs.bound_to(gateway) {
            return Some((*i, HostMatch::Wildcard(Arc::from(format!("*{suffix}")))));
        }
    }
    None
}

/// Why a match block did not match: kept as borrowed data and turned into words only
/// when the trace asks for them (`explain`), so the hot path never formats.
enum Miss<'a> {
    Uri(&'a str, &'a StringMatch),
    Method(&'a str, &'a StringMatch),
    Scheme(&'a str, &'a StringMatch),
    Authority(&'a str, &'a StringMatch),
    Port(Option<u16>, u16),
    Header(&'a str, &'a ValueMatch, Option<&'a String>),
    WithoutHeader(&'a str),
    Query(&'a str),
    SourceLabel(&'a str, &'a str),
    SourceNamespace(&'a str, &'a str),
    Gateway(&'a str, &'a [String]),
}

impl Miss<'_> {
    fn describe(&self) -> String {
        match self {
            Miss::Uri(path, m) => format!("uri {path:?} is not {}", m.describe()),
            Miss::Method(v, m) => format!("method {v} is not {}", m.describe()),
            Miss::Scheme(v, m) => format!("scheme {v} is not {}", m.describe()),
            Miss::Authority(v, m) => format!("authority {v} is not {}", m.describe()),
            Miss::Port(have, want) => format!("port {have:?} is not {want}"),
            Miss::Header(name, cond, value) => header_reason("header", name, cond, *value),
            Miss::WithoutHeader(name) => format!("withoutHeaders: header {name} matches"),
            Miss::Query(name) => format!("query parameter {name} does not match"),
            Miss::SourceLabel(k, v) => format!("source label {k}={v} not present"),
            Miss::SourceNamespace(have, want) => {
                format!("source namespace {have} is not {want}")
            }
            Miss::Gateway(g, list) => format!("gateway {g} not in {list:?}"),
        }
    }
}

fn check_block<'a>(
    m: &'a HttpMatch,
    req: &'a RouteRequest<'a>,
    path: &'a str,
    query: &'a str,
    port: Option<u16>,
) -> Result<(), Miss<'a>> {
    if let Some(uri) = &m.uri
        && !uri.matches(path, m.ignore_uri_case)
    {
        return Err(Miss::Uri(path, uri));
    }
    if let Some(method) = &m.method
        && !method.matches(req.method, false)
    {
        return Err(Miss::Method(req.method, method));
    }
    if let Some(scheme) = &m.scheme
        && !scheme.matches(req.scheme, false)
    {
        return Err(Miss::Scheme(req.scheme, scheme));
    }
    if let Some(authority) = &m.authority
        && !authority.matches(req.authority, false)
    {
        return Err(Miss::Authority(req.authority, authority));
    }
    if let Some(want) = m.port
        && port != Some(want)
    {
        return Err(Miss::Port(port, want));
    }
    for (name, cond) in &m.headers {
        let value = req.headers.get(name);
        if !value_holds(cond, value.map(String::as_str)) {
            return Err(Miss::Header(name, cond, value));
        }
    }
    for (name, cond) in &m.without_headers {
        if value_holds(cond, req.headers.get(name).map(String::as_str)) {
            return Err(Miss::WithoutHeader(name));
        }
    }
    for (name, cond) in &m.query_params {
        let value = query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v);
        if !value_holds(cond, value) {
            return Err(Miss::Query(name));
        }
    }
    for (k, v) in &m.source_labels {
        if req.source_labels.get(k) != Some(v) {
            return Err(Miss::SourceLabel(k, v));
        }
    }
    if let Some(ns) = &m.source_namespace
        && ns != req.source_namespace
    {
        return Err(Miss::SourceNamespace(req.source_namespace, ns));
    }
    if !m.gateways.is_empty() && !m.gateways.iter().any(|g| g == req.gateway) {
        return Err(Miss::Gateway(req.gateway, &m.gateways));
    }
    Ok(())
}

fn value_holds(cond: &ValueMatch, value: Option<&str>) -> bool {
    match (cond, value) {
        (ValueMatch::Present, Some(_)) => true,
        (ValueMatch::Is(m), Some(v)) => m.matches(v, false),
        (_, None) => false,
    }
}

fn header_reason(kind: &str, name: &str, cond: &ValueMatch, value: Option<&String>) -> String {
    match (cond, value) {
        (_, None) => format!("{kind} {name} absent"),
        (ValueMatch::Is(m), Some(v)) => format!("{kind} {name}={v:?} is not {}", m.describe()),
        (ValueMatch::Present, Some(_)) => format!("{kind} {name} present"),
    }
}

fn apply(
    rule: &HttpRoute,
    match_index: Option<usize>,
    path: &str,
    query: &str,
    rng: &mut impl Rng,
) -> RouteOutcome {
    let destinations = match &rule.action {
        RouteAction::Redirect(r) => return RouteOutcome::Redirect(r.clone()),
        RouteAction::DirectResponse { status, body } => {
            return RouteOutcome::DirectResponse {
                status: *status,
                body: body.clone(),
            };
        }
        RouteAction::Forward(d) => d,
    };
    let chosen = pick_weighted(destinations, rng);
    let (delay, abort) = match &rule.fault {
        Some(f) => (
            f.delay.and_then(|(d, pct)| draw(pct, rng).then_some(d)),
            f.abort.and_then(|(s, pct)| draw(pct, rng).then_some(s)),
        ),
        None => (None, None),
    };
    let mirrors = rule
        .mirrors
        .iter()
        .filter(|m| draw(m.percentage, rng))
        .map(|m| m.destination.clone())
        .collect();
    let rewritten_path = rule.rewrite.as_ref().and_then(|rw| {
        let new = rw.uri.as_ref()?;
        let matched_prefix =
            match_index
                .and_then(|i| rule.matches.get(i))
                .and_then(|m| match &m.uri {
                    Some(StringMatch::Prefix(p)) => Some(p.len()),
                    _ => None,
                });
        let rest = match matched_prefix {
            Some(len) => path.get(len..).unwrap_or(""),
            None => "",
        };
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        Some(format!("{new}{rest}{q}"))
    });
    let dest_headers = &destinations[chosen].headers;
    let headers = if dest_headers.is_empty() {
        rule.headers.clone()
    } else {
        let mut merged = (*rule.headers).clone();
        merge_headers(&mut merged, dest_headers);
        Arc::new(merged)
    };
    RouteOutcome::Forward(Box::new(Forward {
        destinations: destinations.clone(),
        chosen,
        rewrite: rule.rewrite.clone(),
        rewritten_path,
        timeout: rule.timeout,
        retries: rule
            .retries
            .clone()
            .unwrap_or_else(RouteRetries::istio_default),
        delay,
        abort,
        mirrors,
        headers,
    }))
}

fn merge_headers(into: &mut HeaderOps, from: &HeaderOps) {
    into.request_set.extend(from.request_set.clone());
    into.request_add.extend(from.request_add.clone());
    into.request_remove
        .extend(from.request_remove.iter().cloned());
    into.response_set.extend(from.response_set.clone());
    into.response_add.extend(from.response_add.clone());
    into.response_remove
        .extend(from.response_remove.iter().cloned());
}

/// Picks a destination by weight. Weights are Istio's integers summing to 100 (or a
/// single destination); a total of 0 picks the first.
pub fn pick_weighted(destinations: &[WeightedDestination], rng: &mut impl Rng) -> usize {
    if destinations.len() <= 1 {
        return 0;
    }
    let total: u64 = destinations.iter().map(|d| u64::from(d.weight)).sum();
    if total == 0 {
        return 0;
    }
    let mut x = rng.random_range(0..total);
    for (i, d) in destinations.iter().enumerate() {
        let w = u64::from(d.weight);
        if x < w {
            return i;
        }
        x -= w;
    }
    destinations.len() - 1
}

/// True with probability `percent`/100 (0 never draws; 100 always, without drawing).
fn draw(percent: f64, rng: &mut impl Rng) -> bool {
    if percent >= 100.0 {
        return true;
    }
    if percent <= 0.0 {
        return false;
    }
    rng.random::<f64>() * 100.0 < percent
}
