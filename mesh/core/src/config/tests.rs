//! Tests of loading whole documents: unknown fields, snake_case, positions, each
//! error class, the cross-resource checks.

use std::time::Duration;

use super::*;

fn load(text: &str) -> (ConfigSet, Vec<Finding>) {
    ConfigSet::load(&[("t.yaml".to_owned(), text.to_owned())])
}

/// `severity: file:line: path: message` for every finding.
fn report(text: &str) -> Vec<String> {
    let (_, findings) = load(text);
    findings
        .iter()
        .map(|f| format!("{}: {f}", f.severity))
        .collect()
}

const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\n";

fn vs(spec: &str) -> String {
    format!("{VS}spec:\n{spec}")
}

#[test]
fn a_valid_virtual_service_has_no_findings() {
    let (set, findings) = load(&vs(
        "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n",
    ));
    assert!(findings.is_empty(), "{findings:?}");
    let r = &set.virtual_services()[0];
    assert_eq!(
        (r.metadata.name.as_str(), r.metadata.namespace.as_str()),
        ("r", "default")
    );
    assert_eq!((r.origin.file.as_str(), r.origin.line), ("t.yaml", 1));
    assert_eq!(
        r.spec.http[0].route[0]
            .destination
            .as_ref()
            .map(|d| d.host.as_str()),
        Some("r")
    );
}

#[test]
fn snake_case_field_names_are_accepted() {
    let (set, findings) = load(&vs(
        "  hosts: [r]\n  http:\n  - match:\n    - source_labels: {app: a}\n    route:\n    - destination: {host: r}\n    retries: {attempts: 3, per_try_timeout: 2s}\n",
    ));
    assert!(findings.is_empty(), "{findings:?}");
    let http = &set.virtual_services()[0].spec.http[0];
    assert_eq!(
        http.retries.as_ref().and_then(|r| r.per_try_timeout),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        http.r#match[0].source_labels.get("app").map(String::as_str),
        Some("a")
    );
}

#[test]
fn unknown_fields_name_the_closest_known_field() {
    let got = report(&vs(
        "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    retries:\n      perTryTimout: 2s\n",
    ));
    assert_eq!(
        got,
        [
            "error: t.yaml:11: spec.http[0].retries.perTryTimout: unknown field (did you mean `perTryTimeout`?)"
        ]
    );
    let got = report(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspek: {}\n",
    );
    assert_eq!(
        got,
        ["error: t.yaml:4: spek: unknown field (did you mean `spec`?)"]
    );
}

#[test]
fn user_data_maps_are_neither_checked_nor_renamed() {
    let (set, findings) = load(&vs(
        "  hosts: [r]\n  http:\n  - match:\n    - headers:\n        x_user_id: {exact: a}\n        end-user: {}\n    route:\n    - destination: {host: r}\n",
    ));
    assert!(findings.is_empty(), "{findings:?}");
    let m = &set.virtual_services()[0].spec.http[0].r#match[0];
    assert!(m.headers.contains_key("x_user_id"));
    assert_eq!(
        m.headers.get("end-user"),
        Some(&model::common::StringMatch::Any)
    );
}

#[test]
fn durations_are_checked_where_they_are() {
    let got = report(&vs(
        "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    timeout: 5sec\n  - route:\n    - destination: {host: r}\n    timeout: -1s\n  - route:\n    - destination: {host: r}\n    timeout: 10\n",
    ));
    assert_eq!(
        got,
        [
            "error: t.yaml:10: spec.http[0].timeout: unknown unit \"sec\" in duration \"5sec\" (units: h, m, s, ms, us, ns; e.g. 5s)",
            "error: t.yaml:13: spec.http[1].timeout: negative duration \"-1s\" (durations must be zero or positive, e.g. 1s)",
            "error: t.yaml:16: spec.http[2].timeout: expected a duration such as \"5s\" or \"100ms\", found the integer 10",
        ]
    );
}

#[test]
fn regexes_must_compile() {
    let got = report(&vs(
        "  hosts: [r]\n  http:\n  - match:\n    - uri: {regex: \"/api/(v1\"}\n    route:\n    - destination: {host: r}\n",
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with(
            "error: t.yaml:9: spec.http[0].match[0].uri.regex: invalid regex \"/api/(v1\": "
        ),
        "{got:?}"
    );
}

#[test]
fn percentages_stay_within_0_and_100() {
    let got = report(&vs(
        "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    fault:\n      abort:\n        httpStatus: 503\n        percentage: {value: 150}\n      delay:\n        fixedDelay: 1s\n        percent: 101\n    mirrorPercentage:\n      value: -1\n",
    ));
    assert_eq!(
        got,
        [
            "error: t.yaml:13: spec.http[0].fault.abort.percentage.value: percentage 150 is out of range (0..=100)",
            "error: t.yaml:16: spec.http[0].fault.delay.percent: percentage 101 is out of range (0..=100)",
            "error: t.yaml:18: spec.http[0].mirrorPercentage.value: percentage -1 is out of range (0..=100)",
        ]
    );
}

#[test]
fn weights_of_several_destinations_must_sum_to_100() {
    let got = report(&vs(
        "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, subset: a}\n      weight: 50\n    - destination: {host: r, subset: b}\n      weight: 40\n  - route:\n    - destination: {host: r}\n      weight: 30\n",
    ));
    let errors: Vec<_> = got.iter().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        errors,
        [
            "error: t.yaml:8: spec.http[0].route: weights of the 2 destinations sum to 90 (they must add up to 100)"
        ]
    );
}

#[test]
fn wildcard_host_is_refused_only_when_bound_to_the_mesh() {
    let got = report(&vs(
        "  hosts: [\"*\"]\n  http:\n  - route:\n    - destination: {host: r}\n",
    ));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("error: t.yaml:6: spec.hosts[0]: wildcard host `*` is not allowed"),
        "{got:?}"
    );
    let with_mesh = vs("  hosts: [a, \"*\"]\n  gateways: [gw, mesh]\n");
    assert_eq!(report(&with_mesh).len(), 1);
    assert!(report(&vs("  hosts: [\"*\"]\n  gateways: [gw]\n")).is_empty());
}

const DR: &str = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n";

#[test]
fn a_subset_must_be_defined_by_the_destination_rule_of_its_host() {
    let route = "  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews.default.svc.cluster.local\n        subset: v2\n";
    let got = report(&format!("{}{DR}", vs(route)));
    assert_eq!(
        got,
        [
            "error: t.yaml:11: spec.http[0].route[0].destination.subset: subset `v2` is not defined by DestinationRule default/reviews (t.yaml:17) for reviews.default.svc.cluster.local (defined: v1)"
        ]
    );
    assert!(report(&format!("{}{DR}", vs(&route.replace("v2", "v1")))).is_empty());
}

#[test]
fn a_subset_without_any_destination_rule_is_a_warning() {
    let got = report(&vs(
        "  hosts: [reviews]\n  tcp:\n  - route:\n    - destination: {host: reviews, subset: v2}\n",
    ));
    assert_eq!(
        got,
        [
            "warning: t.yaml:9: spec.tcp[0].route[0].destination.subset: subset `v2` cannot be checked: the set has no DestinationRule for reviews.default.svc.cluster.local (validate this file together with the one that defines the subset)"
        ]
    );
}

#[test]
fn a_wildcard_destination_rule_without_the_subset_is_a_warning() {
    let wild = DR.replace("host: reviews", "host: \"*.local\"");
    let got = report(&format!(
        "{}{wild}",
        vs("  hosts: [r]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v9}\n")
    ));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with(
            "warning: t.yaml:9: spec.http[0].route[0].destination.subset: subset `v9`"
        ),
        "{got:?}"
    );
}

#[test]
fn two_virtual_services_claiming_a_host_warn() {
    let other = vs("  hosts: [reviews.default.svc.cluster.local]\n").replace("name: r", "name: r2");
    let got = report(&format!("{}---\n{other}", vs("  hosts: [reviews]\n")));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("warning: t.yaml:13: spec.hosts[0]: host reviews.default.svc.cluster.local is also claimed by VirtualService default/r (t.yaml:4) on gateway `mesh`"),
        "{got:?}"
    );
    let gw = other.replace("  hosts:", "  gateways: [gw]\n  hosts:");
    assert!(report(&format!("{}---\n{gw}", vs("  hosts: [reviews]\n"))).is_empty());
}

#[test]
fn the_later_of_two_definitions_wins_with_a_warning() {
    let (set, findings) = load(&format!(
        "{}---\n{}",
        vs("  hosts: [a]\n"),
        vs("  hosts: [b]\n")
    ));
    let got: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "t.yaml:11: metadata.name: VirtualService default/r is defined again, replacing the definition at t.yaml:4 (the later one wins, as with kubectl apply)"
        ]
    );
    assert_eq!(set.virtual_services().len(), 1);
    assert_eq!(set.virtual_services()[0].spec.hosts, ["b"]);
}

#[test]
fn kubernetes_documents_become_topology_and_others_are_noted() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: bookinfo}\nspec:\n  selector: {app: reviews}\n  ports: [{port: 9080, name: http}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: reviews-v1}\nspec:\n  template:\n    metadata: {labels: {app: reviews, version: v1}}\n    spec: {serviceAccountName: reviews}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: e}\n---\n";
    let (set, findings) = load(text);
    let got: Vec<String> = findings
        .iter()
        .map(|f| format!("{}: {f}", f.severity))
        .collect();
    assert_eq!(
        got,
        [
            "note: t.yaml:16: kind: skipped ConfigMap (v1): not a kind meshrig reads",
            "note: t.yaml:20: kind: skipped EnvoyFilter (networking.istio.io/v1alpha3): meshrig does not model this Istio kind",
        ]
    );
    assert_eq!(set.services()[0].namespace, "bookinfo");
    assert_eq!(set.workloads()[0].service_account, "reviews");
    assert_eq!(
        set.workloads()[0].labels.get("version").map(String::as_str),
        Some("v1")
    );
}

#[test]
fn api_versions_are_checked() {
    let got = report(
        "apiVersion: security.istio.io/v1alpha3\nkind: PeerAuthentication\nmetadata: {name: p}\n---\napiVersion: v1\nkind: VirtualService\nmetadata: {name: v}\n---\nkind: Gateway\n",
    );
    assert_eq!(
        got,
        [
            "error: t.yaml:1: apiVersion: security.istio.io/v1alpha3 does not serve PeerAuthentication (use security.istio.io/v1, v1beta1)",
            "error: t.yaml:5: apiVersion: VirtualService is not served by v1 (use networking.istio.io/v1)",
            "error: t.yaml:9: apiVersion: missing or non-string `apiVersion` (every document needs apiVersion and kind)",
        ]
    );
}

#[test]
fn syntax_errors_fail_one_file_and_the_others_still_load() {
    let sources = [
        ("bad.yaml".to_owned(), "a: [1\n".to_owned()),
        ("good.yaml".to_owned(), vs("  hosts: [r]\n")),
    ];
    let (set, findings) = ConfigSet::load(&sources);
    assert_eq!(findings.len(), 1);
    assert_eq!(
        (findings[0].file.as_str(), findings[0].path.as_str()),
        ("bad.yaml", "(yaml)")
    );
    assert_eq!(set.virtual_services().len(), 1);
}

#[test]
fn findings_are_sorted_by_file_order_then_line() {
    let bad = |line: &str| {
        vs(&format!(
            "  hosts: [r]\n  http:\n  - route:\n    - destination: {{host: r}}\n{line}"
        ))
    };
    let sources = [
        ("z.yaml".to_owned(), bad("    timeout: 1x\n")),
        ("a.yaml".to_owned(), bad("    timeout: 2x\n")),
    ];
    let (_, findings) = ConfigSet::load(&sources);
    // a.yaml also redefines VirtualService default/r: a warning on its line 4.
    let at: Vec<(&str, u32)> = findings.iter().map(|f| (f.file.as_str(), f.line)).collect();
    assert_eq!(at, [("z.yaml", 10), ("a.yaml", 4), ("a.yaml", 10)]);
}

#[test]
fn positions_survive_for_later_checks() {
    let (set, _) = load(&vs(
        "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n      weight: 50\n    - destination: {host: r}\n      weight: 50\n",
    ));
    let origin = &set.virtual_services()[0].origin;
    assert_eq!(origin.line_of("spec.http[0].route[1].weight"), 12);
    assert_eq!(origin.line_of("spec.http[0].route[1]"), 11);
    assert_eq!(origin.line_of("metadata.name"), 4);
    assert_eq!(origin.locate("spec.hosts[0]"), "t.yaml:6");
}

#[test]
fn wrong_shapes_say_what_was_found() {
    let got = report(&vs(
        "  hosts: reviews\n  http:\n  - route:\n    - destination: {host: 5}\n    match:\n    - uri: {exact: /a, prefix: /b}\n",
    ));
    assert_eq!(
        got,
        [
            "error: t.yaml:6: spec.hosts: expected a list, found the string \"reviews\" (write `- item` entries)",
            "error: t.yaml:9: spec.http[0].route[0].destination.host: expected a string, found the integer 5 (quote it: \"...\")",
            "error: t.yaml:11: spec.http[0].match[0].uri: sets exact and prefix together (a string match takes exactly one of exact, prefix, regex)",
        ]
    );
}

#[test]
fn destination_rule_fields_parse_and_check() {
    let text = "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: d, namespace: prod}\nspec:\n  host: reviews\n  trafficPolicy:\n    loadBalancer:\n      simple: ROUND_ROBN\n    connectionPool:\n      tcp: {maxConnections: 100, connectTimeout: 30ms}\n      http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10}\n    outlierDetection:\n      consecutive_5xx_errors: 7\n      interval: 5m\n      baseEjectionTime: 15m\n      maxEjectionPercent: 120\n    retryBudget: {percent: 25, minRetryConcurrency: 5}\n  subsets:\n  - name: v1\n  - name: v1\n";
    let (set, findings) = load(text);
    let got: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "t.yaml:8: spec.trafficPolicy.loadBalancer.simple: unknown value \"ROUND_ROBN\" (did you mean `ROUND_ROBIN`? one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST)",
            "t.yaml:16: spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 120 is out of range (0..=100)",
            "t.yaml:20: spec.subsets[1].name: duplicate subset name `v1` (subset names must be unique)",
        ]
    );
    let tp = set.destination_rules()[0]
        .spec
        .traffic_policy
        .as_ref()
        .expect("policy");
    let od = tp.outlier_detection.as_ref().expect("outlier");
    assert_eq!(od.consecutive_5xx_errors, Some(7));
    assert_eq!(od.base_ejection_time, Some(Duration::from_secs(900)));
    let budget = tp.retry_budget.as_ref().expect("budget");
    assert_eq!(
        (budget.percent.map(|p| p.0), budget.min_retry_concurrency),
        (Some(25.0), Some(5))
    );
    let pool = tp
        .connection_pool
        .as_ref()
        .and_then(|p| p.tcp.as_ref())
        .expect("tcp");
    assert_eq!(pool.connect_timeout, Some(Duration::from_millis(30)));
}

#[test]
fn security_policies_parse_and_check() {
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  action: CUSTOM\n  rules:\n  - from:\n    - source: {ipBlocks: [10.0.0.0/8, 1.2.3.4, nope]}\n    when:\n    - key: request.headers[x]\n---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  selector: {matchLabels: {app: x}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    9080: {mode: DISABLE}\n";
    let (set, findings) = load(text);
    let got: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "t.yaml:5: spec.action: action CUSTOM needs a `provider` (name the extension provider)",
            "t.yaml:8: spec.rules[0].from[0].source.ipBlocks[2]: invalid IP block \"nope\" (an address or a CIDR, e.g. 10.0.0.0/8)",
            "t.yaml:10: spec.rules[0].when[0]: a condition needs `values` or `notValues`",
        ]
    );
    let source = set.authorization_policies()[0].spec.rules[0].from[0]
        .source
        .as_ref()
        .expect("source");
    assert_eq!(source.ip_blocks.len(), 2);
    let pa = &set.peer_authentications()[0].spec;
    assert_eq!(
        pa.port_level_mtls.get(&9080).and_then(|m| m.mode),
        Some(model::security::MtlsMode::Disable)
    );
}

#[test]
fn three_errors_give_three_findings() {
    let got = report(&vs(
        "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    timeout: soon\n    retries: {attempts: 2, retry_onn: 5xx}\n    match:\n    - uri: {regex: \"[\"}\n",
    ));
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn retries_aborts_selectors_and_jwt_rules_are_checked() {
    let text = format!(
        "{}---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: j}}\nspec:\n  selector: {{matchLabels: {{app: a}}}}\n  targetRefs: [{{kind: Gateway, name: g}}]\n  jwtRules:\n  - jwksUri: https://example.com/jwks\n",
        vs(
            "  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    retries: {attempts: -1}\n    fault:\n      abort: {httpStatus: 700}\n"
        )
    );
    let got: Vec<String> = load(&text).1.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "t.yaml:10: spec.http[0].retries.attempts: negative retry attempts -1 (use 0 to disable retries)",
            "t.yaml:12: spec.http[0].fault.abort.httpStatus: HTTP status 700 is not a valid status (200..=599)",
            "t.yaml:18: spec.selector: `selector` and `targetRef`/`targetRefs` are set together (use one of them)",
            "t.yaml:21: spec.jwtRules[0].issuer: missing required field `issuer`",
        ]
    );
}
