//! Conformance: the real sidecar and the simulator drive the same mesh-core, so the same
//! request sequence with the same outcomes must give the same decisions in both.
//!
//! `tests/data/scenarios/conformance.yaml` makes every decision deterministic (round
//! robin, a version that always fails, one client sending one request at a time):
//! the run in `--mode sim` and the run in `--mode real` must agree on where every try
//! went (per-version attempts and status codes), how many retries the client's sidecar
//! made, which instance was ejected, after what, and in what words.

use std::path::Path;

use serde_json::Value;

use crate::support::{TempDir, meshrig, read_json, run_with_limit};

fn run(mode: &str, out: &Path) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenarios/conformance.yaml");
    let output = run_with_limit(
        meshrig()
            .args(["run", "--mode", mode, "--quiet", "--out"])
            .arg(out)
            .arg(file),
        std::time::Duration::from_secs(120),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{mode}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    read_json(&out.join("result.json"))
}

/// The decisions, as comparable values.
fn decisions(r: &Value) -> Value {
    let versions: serde_json::Map<String, Value> = r["versions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["status_codes"].clone()))
        .collect();
    let edge = &r["edges"]["client->svc"];
    let outliers: Vec<Value> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            ["ejection", "unejection", "ejection_suppressed"].contains(&e["kind"].as_str().unwrap())
        })
        .map(|e| serde_json::json!([e["kind"], e["at"], e["detail"]]))
        .collect();
    let ejections: Vec<Value> = r["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| serde_json::json!([i["name"], i["ejections"]]))
        .collect();
    serde_json::json!({
        "served_per_version": versions,
        "retries": edge["retries_total"],
        "client_status_codes": edge["status_codes"],
        "outlier_events": outliers,
        "ejections": ejections,
    })
}

#[test]
fn the_real_sidecar_decides_as_the_simulator_does() {
    let dir = TempDir::new("conformance");
    let sim = run("sim", &dir.path("sim"));
    let real = run("real", &dir.path("real"));
    assert_eq!(sim["scenario"]["mode"], "sim");
    assert_eq!(real["scenario"]["mode"], "real");
    let (s, r) = (decisions(&sim), decisions(&real));
    // Not vacuous: the failing instance was tried, retried around and ejected.
    assert_eq!(s["served_per_version"]["svc:v1"]["503"], 3, "{s:#}");
    assert_eq!(s["outlier_events"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(s, r, "sim:\n{s:#}\nreal:\n{r:#}");
}
