use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::config::Severity;
use crate::route::{RouteOutcome, RouteRequest, decide};
use crate::security::authz::Action;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

use crate::test_support::istio_sample as sample;

fn load(sources: Vec<(String, String)>) -> ConfigSet {
    let (set, findings) = ConfigSet::load(&sources);
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    set
}

fn inline(name: &str, yaml: &str) -> (String, String) {
    (name.to_owned(), yaml.to_owned())
}

fn bookinfo(extra: &[(String, String)]) -> ConfigSet {
    let mut sources = vec![
        sample("bookinfo.yaml"),
        sample("bookinfo-virtual-service-all-v1.yaml"),
        sample("bookinfo-destination-rule-all.yaml"),
    ];
    sources.extend_from_slice(extra);
    load(sources)
}

fn proxy_of(set: &ConfigSet, workload: &str) -> ProxyId {
    let w = set
        .workloads()
        .iter()
        .find(|w| w.name == workload)
        .unwrap_or_else(|| panic!("no workload {workload}"));
    ProxyId::from_workload(w)
}

/// The subset a request from `proxy` to `authority` is routed to.
fn routed_subset(snap: &Snapshot, authority: &str) -> Option<String> {
    let headers = BTreeMap::new();
    let req = RouteRequest {
        authority,
        method: "GET",
        path: "/",
        scheme: "http",
        headers: &headers,
        source_labels: &snap.proxy.labels,
        source_namespace: &snap.proxy.namespace,
        gateway: "mesh",
    };
    match decide(&snap.routes, &req, &mut SmallRng::seed_from_u64(1), false).outcome {
        RouteOutcome::Forward(f) => f.destination().subset.clone(),
        _ => None,
    }
}

fn route_ids(snap: &Snapshot) -> Vec<String> {
    snap.routes.services().iter().map(|vs| vs.id()).collect()
}

fn vs(name: &str, namespace: &str, host: &str, subset: &str, export_to: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  hosts: [{host}]\n  exportTo: [{export_to}]\n  http:\n  - route:\n    - destination: {{host: {host}, subset: {subset}}}\n"
    )
}

#[test]
fn productpage_sees_reviews_routes_and_instances() {
    let set = bookinfo(&[]);
    let registry = Registry::from_config(&set);
    let proxy = proxy_of(&set, "productpage-v1");
    assert_eq!(proxy.service_account, "bookinfo-productpage");
    let snap = snapshot(&set, &registry, &proxy, 7);

    assert_eq!(snap.version, 7);
    assert!(route_ids(&snap).contains(&"default/reviews".to_owned()));
    assert_eq!(routed_subset(&snap, "reviews:9080").as_deref(), Some("v1"));

    let reviews = snap.cluster(REVIEWS).expect("reviews cluster");
    let versions: Vec<&str> = reviews
        .iter()
        .map(|e| e.labels.get("version").map_or("", String::as_str))
        .collect();
    assert_eq!(versions, ["v1", "v2", "v3"]);
    let ids: Vec<u32> = reviews.iter().map(|e| e.id.0).collect();
    assert_eq!(ids, [0, 1, 2]);
    assert!(
        reviews
            .iter()
            .all(|e| e.service_account == "bookinfo-reviews"
                && e.namespace == "default"
                && e.labels.get("app").map(String::as_str) == Some("reviews"))
    );
    assert_eq!(reviews[1].address, "reviews-v2-0");
    assert_eq!(
        snap.clusters.keys().cloned().collect::<Vec<_>>(),
        [
            "details.default.svc.cluster.local",
            "productpage.default.svc.cluster.local",
            "ratings.default.svc.cluster.local",
            REVIEWS,
        ]
    );
    assert_eq!(snap.sidecar, None);
    assert_eq!(snap.inbound_mtls.mode, MtlsMode::Permissive);
    assert!(snap.inbound_authz.is_empty());
}

#[test]
fn deployment_replicas_become_synthetic_instances() {
    let set = load(vec![inline(
        "t.yaml",
        "kind: Service\napiVersion: v1\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 8080}]\n---\nkind: Deployment\napiVersion: apps/v1\nmetadata: {name: web-v1, namespace: shop}\nspec:\n  replicas: 3\n  template:\n    metadata: {labels: {app: web, version: v1, topology.kubernetes.io/zone: z1}}\n---\nkind: Deployment\napiVersion: apps/v1\nmetadata: {name: web-other, namespace: elsewhere}\nspec:\n  template:\n    metadata: {labels: {app: web}}\n",
    )]);
    let registry = Registry::from_config(&set);
    let web = registry.service("web.shop.svc.cluster.local").expect("web");
    assert_eq!(web.ports, [8080]);
    let addresses: Vec<&str> = web.instances.iter().map(|i| i.address.as_str()).collect();
    assert_eq!(addresses, ["web-v1-0", "web-v1-1", "web-v1-2"]);
    assert!(web.instances.iter().all(|i| i.zone == "z1"));
    assert_eq!(web.instances[2].id, EndpointId(2));
}

#[test]
fn builder_fills_the_registry_directly() {
    let registry = Registry::default().with_service(
        RegistryService::new("ratings", "prod")
            .port(9080)
            .instance(
                Instance::new("node-a")
                    .label("app", "ratings")
                    .label("version", "v1")
                    .service_account("ratings")
                    .locality("eu", "eu-1a"),
            )
            .instance(Instance::new("node-b").label("version", "v2")),
    );
    let snap = snapshot(
        &ConfigSet::default(),
        &registry,
        &ProxyId::new("client", "prod"),
        1,
    );
    let eps = snap
        .cluster("ratings.prod.svc.cluster.local")
        .expect("short name expanded");
    assert_eq!(eps[0].locality.zone, "eu-1a");
    assert_eq!(eps[0].locality.region, "eu");
    assert_eq!(eps[0].service_account, "ratings");
    assert_eq!(eps[1].id, EndpointId(1));
    assert_eq!(eps[1].service_account, "default");
}

#[test]
fn short_names_expand_in_the_resource_namespace() {
    let set = load(vec![inline(
        "vs.yaml",
        &vs("reviews", "prod", "reviews", "v2", "\"*\""),
    )]);
    let registry = Registry::default()
        .with_service(RegistryService::new("reviews", "prod").instance(Instance::new("r-0")));
    let snap = snapshot(&set, &registry, &ProxyId::new("productpage", "prod"), 1);
    assert_eq!(
        snap.routes.services()[0].hosts,
        ["reviews.prod.svc.cluster.local"]
    );
    assert!(snap.cluster("reviews.prod.svc.cluster.local").is_some());
    // A caller in `prod` reaches it by its short name; from another namespace the
    // short name means a different host, so the qualified one is needed.
    assert_eq!(routed_subset(&snap, "reviews").as_deref(), Some("v2"));
    let other = snapshot(&set, &registry, &ProxyId::new("c", "default"), 1);
    assert_eq!(routed_subset(&other, "reviews"), None);
    assert_eq!(routed_subset(&other, "reviews.prod").as_deref(), Some("v2"));
}

#[test]
fn export_to_controls_which_namespaces_see_a_virtual_service() {
    let set = load(vec![
        inline("a.yaml", &vs("private", "default", "a", "v1", "\".\"")),
        inline("b.yaml", &vs("to-test", "default", "b", "v1", "test")),
        inline("c.yaml", &vs("nowhere", "default", "c", "v1", "\"~\"")),
        inline("d.yaml", &vs("public", "default", "d", "v1", "\"*\"")),
    ]);
    let registry = Registry::default();
    let ids = |ns: &str| route_ids(&snapshot(&set, &registry, &ProxyId::new("w", ns), 1));
    assert_eq!(ids("default"), ["default/private", "default/public"]);
    assert_eq!(ids("test"), ["default/to-test", "default/public"]);
    assert_eq!(ids("prod"), ["default/public"]);

    assert!(exported_to(&[], "a", "b"));
    assert!(exported_to(&["~".into(), "*".into()], "a", "b"));
    assert!(!exported_to(&[".".into()], "a", "b"));
    assert!(exported_to(&[".".into(), "b".into()], "a", "b"));
}

#[test]
fn bookinfo_virtual_service_exported_to_its_namespace_is_hidden_elsewhere() {
    let set = bookinfo(&[inline(
        "private.yaml",
        &vs("reviews", "default", "reviews", "v3", "\".\""),
    )]);
    let registry = Registry::from_config(&set);
    let pp = snapshot(&set, &registry, &proxy_of(&set, "productpage-v1"), 1);
    assert_eq!(routed_subset(&pp, "reviews").as_deref(), Some("v3"));
    let outsider = snapshot(&set, &registry, &ProxyId::new("sleep", "test"), 1);
    assert!(!route_ids(&outsider).contains(&"default/reviews".to_owned()));
    assert_eq!(routed_subset(&outsider, REVIEWS), None);
    // The service itself is still exported everywhere.
    assert!(outsider.cluster(REVIEWS).is_some());
}

fn two_namespace_registry() -> Registry {
    Registry::default()
        .with_service(RegistryService::new("reviews", "bookinfo").instance(Instance::new("r")))
        .with_service(RegistryService::new("ratings", "bookinfo").instance(Instance::new("t")))
        .with_service(RegistryService::new("echo", "other").instance(Instance::new("e")))
        .with_service(RegistryService::new("istiod", "istio-system").instance(Instance::new("i")))
        .with_service(RegistryService::new("api.example.com", "other").instance(Instance::new("x")))
}

fn hosts(snap: &Snapshot) -> Vec<&str> {
    snap.clusters.keys().map(String::as_str).collect()
}

#[test]
fn sidecar_restricting_egress_to_its_namespace_hides_other_services() {
    let set = load(vec![
        sample("concepts-sidecar-egress-namespace-isolation.yaml"),
        inline("vs.yaml", &vs("echo", "other", "echo", "v1", "")),
    ]);
    let registry = two_namespace_registry();
    let inside = snapshot(&set, &registry, &ProxyId::new("w", "bookinfo"), 1);
    assert_eq!(inside.sidecar.as_deref(), Some("bookinfo/default"));
    assert_eq!(
        hosts(&inside),
        [
            "ratings.bookinfo.svc.cluster.local",
            "reviews.bookinfo.svc.cluster.local"
        ]
    );
    assert!(inside.routes.services().is_empty());
    // Namespaces without a Sidecar see everything.
    let outside = snapshot(&set, &registry, &ProxyId::new("w", "other"), 1);
    assert_eq!(outside.sidecar, None);
    assert_eq!(hosts(&outside).len(), 5);
    assert_eq!(route_ids(&outside), ["other/echo"]);
}

#[test]
fn sidecar_egress_hosts_by_namespace_and_name() {
    let sidecar = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s, namespace: bookinfo}\nspec:\n  egress:\n  - hosts: [\"istio-system/*\", \"other/*.example.com\", \"~/*\"]\n  - port: {number: 9080, protocol: HTTP}\n    hosts: [\"*/ratings.bookinfo.svc.cluster.local\", \"other/echo\"]\n";
    let set = load(vec![inline("s.yaml", sidecar)]);
    let snap = snapshot(
        &set,
        &two_namespace_registry(),
        &ProxyId::new("w", "bookinfo"),
        1,
    );
    // `other/echo` is a short name: as in Istio it matches nothing.
    assert_eq!(
        hosts(&snap),
        [
            "api.example.com",
            "istiod.istio-system.svc.cluster.local",
            "ratings.bookinfo.svc.cluster.local",
        ]
    );
}

#[test]
fn sidecar_choice_workload_then_namespace_then_root() {
    let sidecars = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  egress: [{hosts: [\"./*\"]}]\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: ns-wide, namespace: bookinfo}\nspec:\n  egress: [{hosts: [\"istio-system/*\"]}]\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: for-reviews, namespace: bookinfo}\nspec:\n  workloadSelector: {labels: {app: reviews}}\n  egress: [{hosts: [\"*/*\"]}]\n";
    let set = load(vec![inline("s.yaml", sidecars)]);
    let registry = two_namespace_registry();
    let reviews = ProxyId::new("reviews-v1", "bookinfo").label("app", "reviews");
    let snap = snapshot(&set, &registry, &reviews, 1);
    assert_eq!(snap.sidecar.as_deref(), Some("bookinfo/for-reviews"));
    assert_eq!(hosts(&snap).len(), 5);
    let snap = snapshot(&set, &registry, &ProxyId::new("ratings", "bookinfo"), 1);
    assert_eq!(snap.sidecar.as_deref(), Some("bookinfo/ns-wide"));
    assert_eq!(hosts(&snap), ["istiod.istio-system.svc.cluster.local"]);
    // The root namespace's default: `.` is the proxy's own namespace.
    let snap = snapshot(&set, &registry, &ProxyId::new("echo", "other"), 1);
    assert_eq!(snap.sidecar.as_deref(), Some("istio-system/mesh-default"));
    assert_eq!(
        hosts(&snap),
        ["api.example.com", "echo.other.svc.cluster.local"]
    );
}

#[test]
fn destinations_of_visible_virtual_services_are_added_to_the_scope() {
    let set = load(vec![
        sample("concepts-sidecar-egress-namespace-isolation.yaml"),
        inline(
            "vs.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: bookinfo}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: echo.other.svc.cluster.local}\n",
        ),
    ]);
    let snap = snapshot(
        &set,
        &two_namespace_registry(),
        &ProxyId::new("w", "bookinfo"),
        1,
    );
    assert!(snap.cluster("echo.other.svc.cluster.local").is_some());
    assert!(
        snap.cluster("istiod.istio-system.svc.cluster.local")
            .is_none()
    );
}

#[test]
fn service_entries_join_the_registry_with_their_export_to() {
    let set = load(vec![inline(
        "se.yaml",
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: egress}\nspec:\n  hosts: [api.example.com]\n  exportTo: [\".\"]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: STATIC\n  endpoints:\n  - {address: 10.0.0.1, locality: us/us-1a, labels: {version: a}}\n  - {address: 10.0.0.2, weight: 3}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: dns, namespace: egress}\nspec:\n  hosts: [www.example.org]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n",
    )]);
    let registry = Registry::from_config(&set);
    let own = snapshot(&set, &registry, &ProxyId::new("w", "egress"), 1);
    let ext = own
        .cluster("api.example.com")
        .expect("visible in its namespace");
    assert_eq!(ext[0].locality.region, "us");
    assert_eq!(ext[0].locality.zone, "us-1a");
    assert_eq!((ext[1].address.as_str(), ext[1].weight), ("10.0.0.2", 3));
    assert_eq!(
        own.cluster("www.example.org").expect("dns")[0].address,
        "www.example.org"
    );
    let other = snapshot(&set, &registry, &ProxyId::new("w", "default"), 1);
    assert!(other.cluster("api.example.com").is_none());
    assert!(other.cluster("www.example.org").is_some());
}

#[test]
fn authorization_policies_are_selected_by_labels_and_namespace() {
    let policies = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: pp-viewer, namespace: default}\nspec:\n  selector: {matchLabels: {app: productpage}}\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: reviews-only, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  rules: [{}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-post, namespace: default}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {methods: [POST]}}]}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: audit-all, namespace: istio-system}\nspec:\n  action: AUDIT\n  rules: [{}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: elsewhere, namespace: test}\nspec:\n  rules: [{}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: for-gateway, namespace: default}\nspec:\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n  rules: [{}]\n";
    let set = bookinfo(&[inline("authz.yaml", policies)]);
    let registry = Registry::from_config(&set);
    let snap = snapshot(&set, &registry, &proxy_of(&set, "productpage-v1"), 1);
    let names: Vec<(&str, Action)> = snap
        .inbound_authz
        .iter()
        .map(|p| (p.name.as_str(), p.action))
        .collect();
    assert_eq!(
        names,
        [
            ("deny-post", Action::Deny),
            ("pp-viewer", Action::Allow),
            ("audit-all", Action::Audit),
        ]
    );
    let reviews = snapshot(&set, &registry, &proxy_of(&set, "reviews-v2"), 1);
    let names: Vec<&str> = reviews
        .inbound_authz
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["deny-post", "reviews-only", "audit-all"]);
}

#[test]
fn inbound_mtls_resolves_workload_and_port_levels() {
    let pas = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: default}\nspec:\n  mtls: {mode: STRICT}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: reviews, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  portLevelMtls:\n    9080: {mode: DISABLE}\n";
    let set = bookinfo(&[inline("pa.yaml", pas)]);
    let registry = Registry::from_config(&set);
    let reviews = snapshot(&set, &registry, &proxy_of(&set, "reviews-v1"), 1);
    assert_eq!(reviews.inbound_mtls.mode, MtlsMode::Strict);
    assert_eq!(reviews.inbound_mtls_mode(9080), MtlsMode::Disable);
    assert_eq!(reviews.inbound_mtls_mode(15000), MtlsMode::Strict);
    let pp = snapshot(&set, &registry, &proxy_of(&set, "productpage-v1"), 1);
    assert!(pp.inbound_mtls_ports.is_empty());
    assert_eq!(pp.inbound_mtls_mode(9080), MtlsMode::Strict);
}

#[test]
fn same_inputs_give_identical_output_and_digest() {
    let set = bookinfo(&[]);
    let registry = Registry::from_config(&set);
    let proxy = proxy_of(&set, "productpage-v1");
    let a = snapshot(&set, &registry, &proxy, 1);
    let b = snapshot(&set, &registry, &proxy, 1);
    let json = |s: &Snapshot| serde_json::to_string(s).expect("serializes");
    assert_eq!(json(&a), json(&b));
    assert_eq!(a.digest, b.digest);
    // The version is not content.
    let c = snapshot(&set, &registry, &proxy, 2);
    assert_eq!(c.digest, a.digest);
    assert_ne!(json(&a), json(&c));
    // Reloading the same files gives the same digest.
    let again = bookinfo(&[]);
    let d = snapshot(&again, &Registry::from_config(&again), &proxy, 3);
    assert_eq!(d.digest, a.digest);
}

#[test]
fn digest_follows_visible_changes_only() {
    let base_set = bookinfo(&[inline(
        "hidden.yaml",
        &vs("echo", "test", "echo", "v1", "\".\""),
    )]);
    let registry = Registry::from_config(&base_set);
    let proxy = proxy_of(&base_set, "productpage-v1");
    let base = snapshot(&base_set, &registry, &proxy, 1);

    // A change to a VirtualService the proxy cannot see: same digest.
    let hidden = bookinfo(&[inline(
        "hidden.yaml",
        &vs("echo", "test", "echo", "v2", "\".\""),
    )]);
    assert_eq!(snapshot(&hidden, &registry, &proxy, 2).digest, base.digest);

    // A change to a visible one (reviews → v2): a different digest.
    let all_v1 = sample("bookinfo-virtual-service-all-v1.yaml");
    let changed_text = all_v1.1.replacen("subset: v1\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ratings", "subset: v2\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ratings", 1);
    assert_ne!(changed_text, all_v1.1, "the sample's layout changed");
    let changed = load(vec![
        sample("bookinfo.yaml"),
        (all_v1.0, changed_text),
        sample("bookinfo-destination-rule-all.yaml"),
        inline("hidden.yaml", &vs("echo", "test", "echo", "v1", "\".\"")),
    ]);
    let snap = snapshot(&changed, &registry, &proxy, 2);
    assert_eq!(routed_subset(&snap, "reviews").as_deref(), Some("v2"));
    assert_ne!(snap.digest, base.digest);

    // A registry change (a new reviews instance) changes it too.
    let mut grown = registry.clone();
    if let Some(s) = grown.services.iter_mut().find(|s| s.fqdn() == REVIEWS) {
        s.push(Instance::new("reviews-v4-0").label("version", "v4"));
    }
    assert_ne!(snapshot(&base_set, &grown, &proxy, 2).digest, base.digest);
}

#[test]
fn fnv1a64_known_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}
