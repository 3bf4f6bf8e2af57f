//! `meshrig route`: the decision for one request, on Istio's own samples.

use std::time::Duration;

use crate::support::{TempDir, meshrig, run_with_limit};

const LIMIT: Duration = Duration::from_secs(30);

fn sample(name: &str) -> String {
    let dir = std::env::var("MESHRIG_ISTIO_SAMPLES")
        .unwrap_or_else(|_| format!("{}/../shared/testdata/istio", env!("CARGO_MANIFEST_DIR")));
    format!("{dir}/{name}")
}

fn route(args: &[&str]) -> (i32, String, String) {
    let out = run_with_limit(
        meshrig()
            .arg("route")
            .arg("--config")
            .arg(sample("bookinfo-virtual-service-reviews-jason-v2-v3.yaml"))
            .arg("--config")
            .arg(sample("bookinfo-destination-rule-all.yaml"))
            .args(args),
        LIMIT,
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The example: jason goes to subset v2, everyone else to v3.
#[test]
fn jason_goes_to_v2_everyone_else_to_v3() {
    let (code, out, err) = route(&["--host", "reviews", "-H", "end-user: jason"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("destination: reviews.default.svc.cluster.local subset v2\n"),
        "{out}"
    );
    assert!(
        out.contains("virtual service: default/reviews, rule http[0]"),
        "{out}"
    );
    // The rule's own line in the sample file.
    assert!(
        out.contains("bookinfo-virtual-service-reviews-jason-v2-v3.yaml:9"),
        "{out}"
    );
    let (code, out, _) = route(&["--host", "reviews", "-H", "end-user: alice"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("destination: reviews.default.svc.cluster.local subset v3\n"),
        "{out}"
    );
    let (_, out, _) = route(&["--host", "reviews"]);
    assert!(out.contains("subset v3"), "{out}");
    assert!(
        out.contains("retries: 2 on"),
        "Istio's implicit retries are shown: {out}"
    );
    assert!(out.contains("Istio's default"), "{out}");
}

#[test]
fn explain_lists_skipped_rules_and_json_has_the_trace() {
    let (code, out, _) = route(&["--host", "reviews", "--explain"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("skipped http[0]: match[0]: header end-user absent"),
        "{out}"
    );
    let (code, out, err) = route(&["--host", "reviews", "-H", "end-user: jason", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["decision"]["trace"]["rule"], 0);
    assert_eq!(v["decision"]["trace"]["virtual_service"], "default/reviews");
    assert_eq!(v["decision"]["outcome"]["kind"], "forward");
    let chosen = v["decision"]["outcome"]["chosen"].as_u64().unwrap() as usize;
    assert_eq!(
        v["decision"]["outcome"]["destinations"][chosen]["destination"]["subset"],
        "v2"
    );
}

#[test]
fn a_host_without_virtual_service_goes_to_its_service() {
    let (code, out, _) = route(&["--host", "ratings:9080"]);
    assert_eq!(code, 0);
    assert!(out.contains("none claims this host"), "{out}");
    assert!(
        out.contains("destination: ratings.default.svc.cluster.local port 9080"),
        "{out}"
    );
}

#[test]
fn authorization_verdict_with_a_source_principal() {
    let dir = TempDir::new("route-authz");
    let policy = dir.path("deny-jason.yaml");
    std::fs::write(
        &policy,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: no-sleep\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: reviews\n  action: DENY\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/sleep\"]\n",
    )
    .unwrap();
    let policy = policy.to_str().unwrap();
    let (code, out, err) = route(&[
        "--config",
        policy,
        "--host",
        "reviews",
        "--source-principal",
        "spiffe://cluster.local/ns/default/sa/sleep",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("authorization: DENY (403)"), "{out}");
    assert!(out.contains("default/no-sleep"), "{out}");
    let (_, out, _) = route(&[
        "--config",
        policy,
        "--host",
        "reviews",
        "--source-principal",
        "spiffe://cluster.local/ns/default/sa/productpage",
    ]);
    assert!(out.contains("authorization: ALLOW"), "{out}");
}

#[test]
fn bad_input_is_a_usage_error_and_bad_config_fails() {
    let (code, _, err) = route(&["--host", "reviews", "-H", "no colon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--header"), "{err}");
    let (code, _, err) = route(&["--host", "reviews", "--source-principal", "not-a-spiffe-id"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--source-principal"), "{err}");
    let out = run_with_limit(
        meshrig().args(["route", "--config", "/nonexistent.yaml", "--host", "x"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    let dir = TempDir::new("route-bad");
    let bad = dir.path("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n  hosts: [reviews]\n  http:\n  - timeout: soon\n    route:\n    - destination:\n        host: reviews\n",
    )
    .unwrap();
    let out = run_with_limit(
        meshrig()
            .args(["route", "--host", "reviews", "--config"])
            .arg(&bad),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:8"), "{err}");
}
