//! Config snapshots: the versioned view of the mesh that one sidecar needs.
//!
//! A control plane (`mesh-control`, or the simulator's) keeps a [`ConfigSet`] and a
//! [`Registry`]. Whenever either changes it bumps a version and calls [`snapshot`] once
//! per proxy ([`ProxyId`]), and pushes only when the [`digest`](Snapshot::digest)
//! differs from the one the proxy has. The proxy routes with [`Snapshot::routes`],
//! balances over [`Snapshot::clusters`], passes [`Snapshot::inbound_authz`] to
//! [`evaluate`](crate::security::evaluate) and terminates mTLS as
//! [`Snapshot::inbound_mtls_mode`] says. Build the registry with
//! [`Registry::from_config`] when the set carries Kubernetes Services and Deployments,
//! or fill it in ([`RegistryService::new`], [`Instance::new`]) when the driver knows
//! the instances (simulator nodes, real processes).
//!
//! What a proxy sees, as Istio computes it:
//!
//! * **VirtualServices** bound to `mesh` and exported to the proxy's namespace
//!   (`exportTo`: empty or `*` everywhere, `.` the own namespace, a name that
//!   namespace, `~` nowhere; a list of names does not imply the own namespace), and,
//!   when a Sidecar applies, whose namespace and hosts an egress host imports.
//! * **Clusters**: registry services exported to the proxy's namespace and imported by
//!   the Sidecar (all without one), plus every service a visible VirtualService routes
//!   or mirrors to (Istio adds those to the sidecar scope). Endpoints are
//!   subset-independent and carry instance labels for subsets to select on.
//! * **Sidecar**: the first one in the proxy's namespace whose `workloadSelector`
//!   matches, else the first there without a selector, else the first without a
//!   selector in the root namespace (`.` then means the proxy's namespace). Egress
//!   hosts are `namespace/dnsName` (namespace `*`, `.`, `~` or a name; dnsName `*`,
//!   `*.suffix` or an FQDN; wildcards overlap either way, as Istio's `Name.Matches`).
//!   No egress listener imports everything.
//! * **Inbound authorization**: AuthorizationPolicies of the proxy's or the root
//!   namespace whose selector matches its labels, by namespace and name.
//! * **Inbound mTLS**: [`resolve_mtls_mode`] for the workload and for every port a
//!   matching workload-level PeerAuthentication lists in `portLevelMtls`.
//!
//! Simplified, compared with istiod: a Sidecar's egress listeners are merged (port,
//! `bind`, `captureMode` ignored), ingress and `outboundTrafficPolicy` are left out;
//! short names in egress hosts are not expanded (in Istio they match nothing either);
//! Kubernetes Services are exported everywhere (no `networking.istio.io/exportTo`
//! annotation; ServiceEntries honour `exportTo`) and of two services with one FQDN the
//! first wins (no merge); AuthorizationPolicies with `targetRef(s)` are left out (they
//! attach to gateways and waypoints) and conversion problems are not reported here;
//! DestinationRules are not part of the snapshot (traffic policies compile
//! separately). The root namespace is `istio-system` unless [`snapshot_with_root`].
//!
//! **Digest**: FNV-1a 64 over the canonical JSON of the content without the version:
//! the proxy identity, each visible VirtualService as compiled (hosts, gateways, every
//! rule's matches, action, rewrite, timeout, retries, fault, mirrors, header
//! operations, in table order, without `file:line` origins, so moving a resource
//! between files is no change), the clusters, the inbound policies and the resolved
//! mTLS modes (without traces). Equal inputs give equal digests on every platform.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use super::routes::compile_vs;
use super::security::{authorization_policies, peer_authentications};
use crate::config::host::host_matches;
use crate::config::model::service_entry::Resolution;
use crate::config::validate::destinations;
use crate::config::{ConfigSet, Resource, Sidecar, VirtualService, Workload, WorkloadKind, fqdn};
use crate::endpoint::{Endpoint, EndpointId, Locality};
use crate::route::{HttpMatch, RouteAction, RouteTable, StringMatch, ValueMatch};
use crate::security::authz::DEFAULT_ROOT_NAMESPACE;
use crate::security::peer_authn::MtlsTrace;
use crate::security::peer_authn::selector_matches;
use crate::security::{AuthorizationPolicy, MtlsMode, MtlsResolution, resolve_mtls_mode};

/// Pod labels read as an instance's zone and region.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// The services of the mesh and their instances: what a control plane learns from
/// Kubernetes (or the simulator's topology) rather than from Istio resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Registry {
    pub services: Vec<RegistryService>,
}

/// One service: a Kubernetes Service, or one host of a ServiceEntry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RegistryService {
    /// As written: a short name (expanded in `namespace`) or a full host.
    pub name: String,
    pub namespace: String,
    pub ports: Vec<u16>,
    /// Instances; `id`s are dense (0, 1, ...) within the service.
    pub instances: Vec<Instance>,
    /// Namespaces the service is visible in (`exportTo`); empty means all.
    pub export_to: Vec<String>,
}

/// One instance (pod, VM, simulator node) of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub id: EndpointId,
    /// `ip:port`, a node name, or a synthetic name (see [`Registry::from_config`]).
    pub address: String,
    /// `app`, `version`, ...: DestinationRule subsets select on these.
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub zone: String,
    pub region: String,
    /// Load-balancing weight (1 unless a ServiceEntry endpoint says otherwise).
    pub weight: u32,
}

impl Registry {
    /// Adds a service (builder style, from `Registry::default()`).
    pub fn with_service(mut self, service: RegistryService) -> Self {
        self.services.push(service);
        self
    }

    /// What the set's topology says, Kubernetes Services first, then ServiceEntries:
    ///
    /// * a Service selects the Deployments and Pods of its namespace matching its
    ///   (non-empty) selector; a Deployment with `replicas: N` gives N instances with
    ///   the synthetic addresses `<deployment>-0` .. `<deployment>-<N-1>`, a Pod one
    ///   addressed by its name; labels and service account are the pod template's,
    ///   zone and region its [`ZONE_LABEL`] / [`REGION_LABEL`] labels (else empty);
    /// * each ServiceEntry host is a service with the entry's namespace and
    ///   `exportTo`; its instances are the `endpoints`, else the workloads its
    ///   `workloadSelector` selects, else (DNS resolution) the host itself.
    pub fn from_config(set: &ConfigSet) -> Self {
        let mut services = Vec::new();
        for s in set.services() {
            let mut service = RegistryService::new(&s.name, &s.namespace);
            service.ports = s
                .ports
                .iter()
                .filter_map(|p| p.port.try_into().ok())
                .collect();
            add_workloads(&mut service, set.workloads(), &s.selector);
            services.push(service);
        }
        for se in set.service_entries() {
            let spec = &se.spec;
            for host in &spec.hosts {
                let mut service = RegistryService::new(host, &se.metadata.namespace);
                service.ports = spec
                    .ports
                    .iter()
                    .filter_map(|p| p.number?.try_into().ok())
                    .collect();
                service.export_to.clone_from(&spec.export_to);
                for ep in &spec.endpoints {
                    let at = Locality::parse(ep.locality.as_deref().unwrap_or(""));
                    let sa = ep.service_account.as_deref().unwrap_or("default");
                    let address = ep.address.as_deref().unwrap_or(host);
                    service.push(Instance {
                        labels: ep.labels.clone(),
                        weight: ep.weight.unwrap_or(1),
                        ..Instance::new(address)
                            .service_account(sa)
                            .locality(at.region, at.zone)
                    });
                }
                if let Some(selector) = spec.workload_selector.as_ref().map(|w| &w.labels) {
                    add_workloads(&mut service, set.workloads(), selector);
                }
                let dns = matches!(
                    spec.resolution,
                    Some(Resolution::Dns | Resolution::DnsRoundRobin)
                );
                if service.instances.is_empty() && dns {
                    service.push(Instance::new(host));
                }
                services.push(service);
            }
        }
        Registry { services }
    }

    /// The first service whose FQDN is `host` (lower case).
    pub fn service(&self, host: &str) -> Option<&RegistryService> {
        self.services.iter().find(|s| s.fqdn() == host)
    }
}

/// Adds the instances of the workloads in `service`'s namespace that a non-empty
/// `selector` selects.
fn add_workloads(service: &mut RegistryService, workloads: &[Workload], selector: &Labels) {
    let namespace = service.namespace.clone();
    let selected =
        |w: &&Workload| w.namespace == namespace && selector_matches(selector, &w.labels);
    for w in workloads
        .iter()
        .filter(selected)
        .filter(|_| !selector.is_empty())
    {
        let label = |k: &str| w.labels.get(k).cloned().unwrap_or_default();
        for i in 0..w.replicas {
            let address = match w.kind {
                WorkloadKind::Pod => w.name.clone(),
                WorkloadKind::Deployment => format!("{}-{i}", w.name),
            };
            service.push(Instance {
                labels: w.labels.clone(),
                ..Instance::new(address)
                    .service_account(&w.service_account)
                    .locality(label(REGION_LABEL), label(ZONE_LABEL))
            });
        }
    }
}

type Labels = BTreeMap<String, String>;

impl RegistryService {
    /// A service with no ports and no instances, exported everywhere.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        let (name, namespace) = (name.into(), namespace.into());
        RegistryService {
            name,
            namespace,
            ..RegistryService::default()
        }
    }

    /// The service's host as Istio names it: `reviews` in `default` is
    /// `reviews.default.svc.cluster.local` (lower case).
    pub fn fqdn(&self) -> String {
        fqdn(&self.name, &self.namespace).to_ascii_lowercase()
    }

    /// Adds a port (builder style).
    pub fn port(mut self, port: u16) -> Self {
        self.ports.push(port);
        self
    }

    /// Adds an instance, giving it the next dense id (builder style).
    pub fn instance(mut self, instance: Instance) -> Self {
        self.push(instance);
        self
    }

    /// Adds an instance, giving it the next dense id.
    pub fn push(&mut self, mut instance: Instance) {
        instance.id = EndpointId(u32::try_from(self.instances.len()).unwrap_or(u32::MAX));
        self.instances.push(instance);
    }
}

impl Instance {
    /// An instance at `address` with no labels, service account `default`, no
    /// locality and weight 1. Its id is set when it is added to a service.
    pub fn new(address: impl Into<String>) -> Self {
        let (zone, region, labels) = (String::new(), String::new(), BTreeMap::new());
        let service_account = "default".to_owned();
        let (id, address, weight) = (EndpointId(0), address.into(), 1);
        Instance {
            id,
            address,
            labels,
            service_account,
            zone,
            region,
            weight,
        }
    }

    /// Adds a label (builder style).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the service account (builder style).
    pub fn service_account(mut self, account: impl Into<String>) -> Self {
        self.service_account = account.into();
        self
    }

    /// Sets region and zone (builder style).
    pub fn locality(mut self, region: impl Into<String>, zone: impl Into<String>) -> Self {
        (self.region, self.zone) = (region.into(), zone.into());
        self
    }

    /// The endpoint the policies see, for a service in `namespace`.
    pub fn endpoint(&self, namespace: &str) -> Endpoint {
        let (region, zone) = (self.region.clone(), self.zone.clone());
        Endpoint {
            id: self.id,
            address: self.address.clone(),
            labels: self.labels.clone(),
            locality: Locality {
                region,
                zone,
                subzone: String::new(),
            },
            weight: self.weight,
            namespace: namespace.to_owned(),
            service_account: self.service_account.clone(),
        }
    }
}

/// Who a sidecar serves: the workload it is injected into.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ProxyId {
    pub workload: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
}

impl ProxyId {
    /// The proxy of `workload` in `namespace`, no labels, service account `default`.
    pub fn new(workload: impl Into<String>, namespace: impl Into<String>) -> Self {
        ProxyId {
            workload: workload.into(),
            namespace: namespace.into(),
            labels: BTreeMap::new(),
            service_account: "default".to_owned(),
        }
    }

    /// Adds a label (builder style).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The proxy of a Deployment or Pod of the set (all its replicas share a view).
    pub fn from_workload(w: &Workload) -> Self {
        ProxyId {
            workload: w.name.clone(),
            namespace: w.namespace.clone(),
            labels: w.labels.clone(),
            service_account: w.service_account.clone(),
        }
    }

    /// The proxy of one registry instance; the workload is named by its address.
    pub fn of_instance(service: &RegistryService, instance: &Instance) -> Self {
        ProxyId {
            workload: instance.address.clone(),
            namespace: service.namespace.clone(),
            labels: instance.labels.clone(),
            service_account: instance.service_account.clone(),
        }
    }
}

/// The view of the mesh one sidecar needs, at one configuration version.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The control plane's version counter; not part of the digest.
    pub version: u64,
    pub proxy: ProxyId,
    /// The VirtualServices visible to this proxy, in the set's order.
    pub routes: RouteTable,
    /// FQDN → every instance of the service (subset-independent).
    pub clusters: BTreeMap<String, Vec<Endpoint>>,
    /// AuthorizationPolicies applying to this workload, by namespace and name.
    pub inbound_authz: Vec<AuthorizationPolicy>,
    /// The workload's inbound mTLS mode, with how it was resolved.
    pub inbound_mtls: MtlsResolution,
    /// Ports whose mode a workload-level `portLevelMtls` sets.
    pub inbound_mtls_ports: BTreeMap<u16, MtlsMode>,
    /// `namespace/name` of the Sidecar that scoped this view, if any. Not part of
    /// the digest (its effect is).
    pub sidecar: Option<String>,
    /// Content hash; see the module docs.
    pub digest: u64,
}

impl Snapshot {
    /// The inbound mTLS mode for `port` (the workload's mode unless a port-level
    /// setting overrides it).
    pub fn inbound_mtls_mode(&self, port: u16) -> MtlsMode {
        self.inbound_mtls_ports
            .get(&port)
            .copied()
            .unwrap_or(self.inbound_mtls.mode)
    }

    /// The endpoints of `host` (an FQDN), if the proxy can reach it.
    pub fn cluster(&self, host: &str) -> Option<&[Endpoint]> {
        self.clusters.get(host).map(Vec::as_slice)
    }
}

/// Serializes everything, including the version, the digest, rule origins and the
/// mTLS trace. Deterministic: the same inputs give byte-identical output.
impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        View::of(self, true).serialize(serializer)
    }
}

/// The serialized form: everything (`full`), or the content the digest covers.
#[derive(Serialize)]
struct View<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sidecar: Option<&'a str>,
    proxy: &'a ProxyId,
    routes: Vec<Value>,
    clusters: &'a BTreeMap<String, Vec<Endpoint>>,
    inbound_authz: &'a [AuthorizationPolicy],
    inbound_mtls: MtlsMode,
    inbound_mtls_ports: &'a BTreeMap<u16, MtlsMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inbound_mtls_trace: Option<&'a MtlsTrace>,
}

impl<'a> View<'a> {
    fn of(snap: &'a Snapshot, full: bool) -> Self {
        View {
            version: full.then_some(snap.version),
            digest: full.then(|| format!("{:016x}", snap.digest)),
            sidecar: snap.sidecar.as_deref().filter(|_| full),
            proxy: &snap.proxy,
            routes: routes_view(&snap.routes, full),
            clusters: &snap.clusters,
            inbound_authz: &snap.inbound_authz,
            inbound_mtls: snap.inbound_mtls.mode,
            inbound_mtls_ports: &snap.inbound_mtls_ports,
            inbound_mtls_trace: full.then_some(&snap.inbound_mtls.trace),
        }
    }
}

/// The snapshot of `proxy`'s view at `version`, with Istio's default root namespace
/// (`istio-system`). Pure: the same arguments give the same snapshot.
pub fn snapshot(set: &ConfigSet, registry: &Registry, proxy: &ProxyId, version: u64) -> Snapshot {
    snapshot_with_root(set, registry, proxy, version, DEFAULT_ROOT_NAMESPACE)
}

/// [`snapshot`] for a mesh whose root namespace is `root_namespace`.
pub fn snapshot_with_root(
    set: &ConfigSet,
    registry: &Registry,
    proxy: &ProxyId,
    version: u64,
    root_namespace: &str,
) -> Snapshot {
    let ns = proxy.namespace.as_str();
    let sidecar = sidecar_for(set, proxy, root_namespace);
    let scope = sidecar.and_then(|s| EgressScope::of(&s.spec, ns));

    let visible: Vec<&Resource<VirtualService>> = set
        .virtual_services()
        .iter()
        .filter(|vs| {
            vs.spec.binds_mesh() && exported_to(&vs.spec.export_to, &vs.metadata.namespace, ns)
        })
        .filter(|vs| {
            scope.as_ref().is_none_or(|sc| {
                let vs_ns = &vs.metadata.namespace;
                vs.spec
                    .hosts
                    .iter()
                    .any(|h| sc.imports(vs_ns, &fqdn(h, vs_ns)))
            })
        })
        .collect();
    let routed: BTreeSet<String> = visible
        .iter()
        .flat_map(|vs| {
            destinations(&vs.spec)
                .into_iter()
                .map(|(_, d)| fqdn(&d.host, &vs.metadata.namespace).to_ascii_lowercase())
        })
        .collect();
    let routes = RouteTable::new(visible.iter().map(|vs| compile_vs(vs)).collect());

    let mut clusters = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for s in &registry.services {
        let host = s.fqdn();
        if !seen.insert(host.clone()) || !exported_to(&s.export_to, &s.namespace, ns) {
            continue;
        }
        let imported = scope
            .as_ref()
            .is_none_or(|sc| sc.imports(&s.namespace, &host));
        if imported || routed.contains(&host) {
            let endpoints = s
                .instances
                .iter()
                .map(|i| i.endpoint(&s.namespace))
                .collect();
            clusters.insert(host, endpoints);
        }
    }

    let (policies, _) = authorization_policies(set);
    let mut inbound_authz: Vec<AuthorizationPolicy> = set
        .authorization_policies()
        .iter()
        .zip(policies)
        .filter(|(res, p)| {
            res.spec.target_ref.is_none()
                && res.spec.target_refs.is_empty()
                && (p.namespace == ns || p.namespace == root_namespace)
                && selector_matches(&p.selector, &proxy.labels)
        })
        .map(|(_, p)| p)
        .collect();
    inbound_authz.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let peer = peer_authentications(set);
    let inbound_mtls = resolve_mtls_mode(&peer, root_namespace, ns, &proxy.labels, None);
    let inbound_mtls_ports = peer
        .iter()
        .filter(|p| {
            p.namespace == ns
                && !p.selector.is_empty()
                && selector_matches(&p.selector, &proxy.labels)
        })
        .flat_map(|p| p.port_level.keys().copied())
        .collect::<BTreeSet<u16>>()
        .into_iter()
        .map(|port| {
            let r = resolve_mtls_mode(&peer, root_namespace, ns, &proxy.labels, Some(port));
            (port, r.mode)
        })
        .collect();

    let mut snap = Snapshot {
        version,
        proxy: proxy.clone(),
        routes,
        clusters,
        inbound_authz,
        inbound_mtls,
        inbound_mtls_ports,
        sidecar: sidecar.map(Resource::key),
        digest: 0,
    };
    snap.digest = digest(&snap);
    snap
}

/// Whether a resource in `own` with `exportTo` `export_to` is visible in `namespace`.
pub fn exported_to(export_to: &[String], own: &str, namespace: &str) -> bool {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return true;
    }
    if export_to.iter().any(|e| e == "~") {
        return false;
    }
    export_to
        .iter()
        .any(|e| e == namespace || (e == "." && own == namespace))
}

/// The Sidecar that applies to `proxy`, if any (see the module docs).
pub fn sidecar_for<'a>(
    set: &'a ConfigSet,
    proxy: &ProxyId,
    root_namespace: &str,
) -> Option<&'a Resource<Sidecar>> {
    let in_ns = || {
        set.sidecars()
            .iter()
            .filter(|s| s.metadata.namespace == proxy.namespace)
    };
    in_ns()
        .find(|s| selector(s).is_some_and(|l| selector_matches(l, &proxy.labels)))
        .or_else(|| in_ns().find(|s| selector(s).is_none()))
        .or_else(|| {
            set.sidecars()
                .iter()
                .find(|s| s.metadata.namespace == root_namespace && selector(s).is_none())
        })
}

/// A Sidecar's `workloadSelector` labels; `None` when it has none (or they are empty).
fn selector(s: &Resource<Sidecar>) -> Option<&BTreeMap<String, String>> {
    s.spec
        .workload_selector
        .as_ref()
        .map(|w| &w.labels)
        .filter(|l| !l.is_empty())
}

/// The `namespace/dnsName` imports of a Sidecar's egress listeners, with `.`
/// resolved to the proxy's namespace.
#[derive(Debug)]
struct EgressScope {
    /// (namespace or `*`, lower-case dnsName pattern).
    hosts: Vec<(String, String)>,
}

impl EgressScope {
    /// `None` when the Sidecar has no egress listener (it then imports everything).
    fn of(sidecar: &Sidecar, proxy_namespace: &str) -> Option<Self> {
        if sidecar.egress.is_empty() {
            return None;
        }
        let hosts = sidecar
            .egress
            .iter()
            .flat_map(|l| &l.hosts)
            .filter_map(|h| {
                let (ns, dns) = h.split_once('/')?;
                let ns = match ns {
                    "~" => return None,
                    "." => proxy_namespace,
                    other => other,
                };
                Some((ns.to_owned(), dns.to_ascii_lowercase()))
            })
            .collect();
        Some(EgressScope { hosts })
    }

    /// Whether a resource in `namespace` for `host` (an FQDN) is imported.
    fn imports(&self, namespace: &str, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.iter().any(|(ns, dns)| {
            (ns == "*" || ns == namespace) && (host_matches(dns, &host) || host_matches(&host, dns))
        })
    }
}

/// FNV-1a 64 over the canonical content (see the module docs).
fn digest(snap: &Snapshot) -> u64 {
    // Serializing plain data to a Vec cannot fail; an empty input would still hash.
    fnv1a64(&serde_json::to_vec(&View::of(snap, false)).unwrap_or_default())
}

/// FNV-1a, 64 bits: small, stable across platforms and Rust versions.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The compiled VirtualServices as JSON; `origins` adds the `file:line`s.
fn routes_view(table: &RouteTable, origins: bool) -> Vec<Value> {
    let origin = |v: &mut Value, o: &Option<std::sync::Arc<str>>| {
        if origins {
            v["origin"] = json!(o.as_deref());
        }
    };
    let mut out = Vec::new();
    for vs in table.services() {
        let mut http = Vec::new();
        for r in &vs.http {
            let mut v = json!({
                "name": r.name, "match": r.matches.iter().map(match_view).collect::<Vec<_>>(),
                "action": match &r.action {
                    RouteAction::Forward(to) => json!({ "forward": &**to }),
                    RouteAction::Redirect(redirect) => json!({ "redirect": redirect }),
                    RouteAction::DirectResponse { status, body } => {
                        json!({ "direct_response": { "status": status, "body": body } })
                    }
                },
                "rewrite": r.rewrite, "timeout": r.timeout, "retries": r.retries,
                "fault": r.fault, "mirrors": r.mirrors, "headers": &*r.headers,
            });
            origin(&mut v, &r.origin);
            http.push(v);
        }
        let mut v = json!({
            "name": vs.name, "namespace": vs.namespace, "hosts": vs.hosts,
            "gateways": vs.gateways, "http": http,
        });
        origin(&mut v, &vs.origin);
        out.push(v);
    }
    out
}

fn match_view(m: &HttpMatch) -> Value {
    let s = |m: &Option<StringMatch>| m.as_ref().map(StringMatch::describe);
    let values = |map: &BTreeMap<String, ValueMatch>| {
        let text = |v: &ValueMatch| match v {
            ValueMatch::Present => "present".to_owned(),
            ValueMatch::Is(sm) => sm.describe(),
        };
        map.iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect::<BTreeMap<_, _>>()
    };
    json!({
        "name": m.name, "uri": s(&m.uri), "ignore_uri_case": m.ignore_uri_case,
        "scheme": s(&m.scheme), "method": s(&m.method), "authority": s(&m.authority),
        "headers": values(&m.headers), "without_headers": values(&m.without_headers),
        "query_params": values(&m.query_params), "port": m.port,
        "source_labels": m.source_labels, "source_namespace": m.source_namespace,
        "gateways": m.gateways,
    })
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
