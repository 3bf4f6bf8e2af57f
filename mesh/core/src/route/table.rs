//! The routing table: VirtualServices compiled into the form the decision needs.
//!
//! Built once per configuration snapshot (regexes compiled, hosts expanded to FQDNs,
//! hosts indexed), then consulted for every request without allocation in the
//! common case.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;

/// How a string is matched (Istio `StringMatch`).
#[derive(Debug, Clone)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    /// RE2 syntax, anchored: the whole value must match, as in Envoy.
    Regex(regex::Regex),
}

impl StringMatch {
    /// An anchored regex match (Istio's regexes match the whole string).
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        Ok(StringMatch::Regex(regex::Regex::new(&format!(
            "^(?:{pattern})$"
        ))?))
    }

    /// True when `value` matches. `ignore_case` lowercases both sides (used for URIs
    /// with `ignoreUriCase`; not applied to regexes, as Istio).
    pub fn matches(&self, value: &str, ignore_case: bool) -> bool {
        match self {
            StringMatch::Exact(s) if ignore_case => s.eq_ignore_ascii_case(value),
            StringMatch::Exact(s) => s == value,
            StringMatch::Prefix(p) if ignore_case => value
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p)),
            StringMatch::Prefix(p) => value.starts_with(p.as_str()),
            StringMatch::Regex(r) => r.is_match(value),
        }
    }

    /// A short description for traces: `exact "/login"`, `prefix "/api"`, `regex "..."`.
    pub fn describe(&self) -> String {
        match self {
            StringMatch::Exact(s) => format!("exact {s:?}"),
            StringMatch::Prefix(s) => format!("prefix {s:?}"),
            StringMatch::Regex(r) => {
                let p = r.as_str();
                let inner = p
                    .strip_prefix("^(?:")
                    .and_then(|x| x.strip_suffix(")$"))
                    .unwrap_or(p);
                format!("regex {inner:?}")
            }
        }
    }
}

/// A header or query-parameter condition: a value match, or presence (`{}` in Istio).
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// The header must be present, with any value.
    Present,
    Is(StringMatch),
}

/// One `match` block of an HTTP route: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct HttpMatch {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub ignore_uri_case: bool,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    /// Lower-case header name → condition.
    pub headers: BTreeMap<String, ValueMatch>,
    /// Lower-case header name → condition that must NOT hold.
    pub without_headers: BTreeMap<String, ValueMatch>,
    pub query_params: BTreeMap<String, ValueMatch>,
    pub port: Option<u16>,
    pub source_labels: BTreeMap<String, String>,
    pub source_namespace: Option<String>,
    pub gateways: Vec<String>,
}

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// Fully qualified host.
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
}

/// A destination with its weight (0..=100; a single destination has 100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedDestination {
    pub destination: Destination,
    pub weight: u32,
    pub headers: HeaderOps,
}

impl WeightedDestination {
    /// A destination `host` (FQDN), optional `subset`, with `weight` and no header edits.
    pub fn to(host: &str, subset: Option<&str>, weight: u32) -> Self {
        WeightedDestination {
            destination: Destination {
                host: host.to_owned(),
                subset: subset.map(str::to_owned),
                port: None,
            },
            weight,
            headers: HeaderOps::default(),
        }
    }
}

/// Header manipulation (`headers.request` / `headers.response`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HeaderOps {
    pub request_set: BTreeMap<String, String>,
    pub request_add: BTreeMap<String, String>,
    pub request_remove: Vec<String>,
    pub response_set: BTreeMap<String, String>,
    pub response_add: BTreeMap<String, String>,
    pub response_remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        *self == HeaderOps::default()
    }
}

/// `rewrite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rewrite {
    /// Replaces the matched URI prefix (or the whole path for exact/regex matches).
    pub uri: Option<String>,
    pub authority: Option<String>,
}

/// `redirect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub scheme: Option<String>,
    pub port: Option<u16>,
    /// Default is 301.
    pub status: u16,
}

/// `fault` (delay and abort), each applied to a percentage of requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    pub delay: Option<(Duration, f64)>,
    /// (HTTP status, percentage).
    pub abort: Option<(u16, f64)>,
}

/// A route's retry settings as written (`retries`), or Istio's default when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteRetries {
    /// Retries after the first try: a request is tried at most `attempts + 1` times.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub retry_on: Arc<str>,
    /// True when nothing was configured and this is Istio's implicit default.
    pub istio_default: bool,
}

impl RouteRetries {
    /// What Istio applies when a route says nothing: 2 retries on
    /// `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
    /// (with 503 as the retriable status code).
    pub fn istio_default() -> Self {
        static DEFAULT: OnceLock<RouteRetries> = OnceLock::new();
        DEFAULT
            .get_or_init(|| RouteRetries {
                attempts: 2,
                per_try_timeout: None,
                retry_on: Arc::from(
                    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                ),
                istio_default: true,
            })
            .clone()
    }
}

/// `mirror` with its percentage (Istio: 100% when a mirror is set without one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mirror {
    pub destination: Destination,
    pub percentage: f64,
}

/// What a route does when it matches.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Shared, so a decision refers to the rule's destinations without copying them.
    Forward(Arc<[WeightedDestination]>),
    Redirect(Redirect),
    /// `directResponse`: status and body.
    DirectResponse {
        status: u16,
        body: Option<String>,
    },
}

/// One entry of a VirtualService's `http` list.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    pub name: Option<String>,
    /// Empty: matches everything.
    pub matches: Vec<HttpMatch>,
    pub action: RouteAction,
    pub rewrite: Option<Rewrite>,
    pub timeout: Option<Duration>,
    pub retries: Option<RouteRetries>,
    pub fault: Option<Fault>,
    pub mirrors: Vec<Mirror>,
    pub headers: Arc<HeaderOps>,
    /// Source line of this rule, for traces (`file:line`).
    pub origin: Option<Arc<str>>,
}

impl HttpRoute {
    /// A rule that forwards requests matching any of `matches` (all when empty) to
    /// `destinations`, with nothing else set.
    pub fn forward(matches: Vec<HttpMatch>, destinations: Vec<WeightedDestination>) -> Self {
        HttpRoute {
            name: None,
            matches,
            action: RouteAction::Forward(destinations.into()),
            rewrite: None,
            timeout: None,
            retries: None,
            fault: None,
            mirrors: vec![],
            headers: Arc::default(),
            origin: None,
        }
    }
}

/// One VirtualService, compiled.
#[derive(Debug, Clone)]
pub struct VirtualServiceRoutes {
    pub name: String,
    pub namespace: String,
    /// Fully qualified hosts (`reviews.default.svc.cluster.local`, `*.example.com`).
    pub hosts: Vec<String>,
    /// Gateways the routes are bound to; empty means the implicit `mesh`.
    pub gateways: Vec<String>,
    pub http: Vec<HttpRoute>,
    pub origin: Option<Arc<str>>,
}

impl VirtualServiceRoutes {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// True when bound to `gateway` (`mesh` for sidecars). No gateways listed means
    /// bound to `mesh` only, as Istio.
    pub fn bound_to(&self, gateway: &str) -> bool {
        if self.gateways.is_empty() {
            return gateway == "mesh";
        }
        self.gateways.iter().any(|g| g == gateway)
    }
}

/// Every VirtualService of a configuration, indexed by host.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub(crate) services: Vec<VirtualServiceRoutes>,
    /// `namespace/name` per service, shared into traces.
    pub(crate) ids: Vec<Arc<str>>,
    /// Exact FQDN → VirtualService indices (first is the oldest definition).
    pub(crate) exact: BTreeMap<String, Vec<usize>>,
    /// Wildcard suffix (`.example.com`, or empty for `*`) → indices, most specific
    /// (longest suffix) first.
    pub(crate) wildcards: Vec<(String, usize)>,
}

impl RouteTable {
    /// Indexes `services` by host. Order matters: when two VirtualServices claim the
    /// same host, the first one wins (Istio picks the oldest; callers pass them in
    /// creation order).
    pub fn new(services: Vec<VirtualServiceRoutes>) -> Self {
        let mut exact: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut wildcards = Vec::new();
        for (i, vs) in services.iter().enumerate() {
            for host in &vs.hosts {
                if let Some(suffix) = host.strip_prefix('*') {
                    wildcards.push((suffix.to_owned(), i));
                } else {
                    exact.entry(host.to_ascii_lowercase()).or_default().push(i);
                }
            }
        }
        // Longest suffix first; stable, so earlier definitions win ties.
        wildcards.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        let ids = services.iter().map(|vs| Arc::from(vs.id())).collect();
        RouteTable {
            services,
            ids,
            exact,
            wildcards,
        }
    }

    /// The VirtualServices in the table.
    pub fn services(&self) -> &[VirtualServiceRoutes] {
        &self.services
    }
}
