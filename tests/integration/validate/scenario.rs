//! `meshrig validate` on scenario files (`kind: Scenario`): a valid scenario with a
//! referenced Istio file passes; typos and unknown references are reported with
//! file:line and field path, all in one run, with exit 1.

use super::{LIMIT, stdout};
use crate::support::{TempDir, meshrig, run_with_limit};

const VALID: &str = r#"apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: canary }
spec:
  duration: 30s
  topology:
    zones: [a, b]
    services:
      - name: frontend
        instances: [{ zone: a, count: 2 }]
        app: { calls: [{ service: reviews, path: /reviews }] }
      - name: reviews
        versions:
          v1: { instances: [{ zone: a, count: 2 }] }
          v2: { instances: [{ zone: b, count: 1 }] }
  mesh:
    config: [{ file: istio/reviews-dr.yaml }]
  workload:
    - { target: frontend, rate: { constant: 100/s } }
  faults:
    - { at: 10s, zoneOutage: b, for: 5s }
  assertions:
    - "p99(frontend) < 50ms"
"#;

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
";

/// Writes the scenario (and the DestinationRule it references) into a temp dir and
/// runs `meshrig validate` on it.
fn run(name: &str, scenario: &str) -> (std::process::Output, String, TempDir) {
    let dir = TempDir::new(name);
    std::fs::create_dir_all(dir.path("istio")).expect("mkdir");
    std::fs::write(dir.path("istio/reviews-dr.yaml"), DR).expect("write");
    let file = dir.path("scenario.yaml");
    std::fs::write(&file, scenario).expect("write");
    let shown = file.display().to_string();
    let mut cmd = meshrig();
    cmd.arg("validate").arg(&file);
    (run_with_limit(&mut cmd, LIMIT), shown, dir)
}

#[test]
fn a_valid_scenario_passes() {
    let (out, _, _dir) = run("scenario-valid", VALID);
    assert_eq!(stdout(&out), ["0 errors, 0 warnings in 1 file"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn typos_and_unknown_references_are_reported_with_line_and_path() {
    let broken = VALID
        .replace("        app: { calls", "        ap: { calls")
        .replace("{ target: frontend,", "{ target: frontnd,")
        .replace("zoneOutage: b,", "zoneOutage: c,");
    let (out, f, _dir) = run("scenario-broken", &broken);
    assert_eq!(
        stdout(&out),
        [
            format!(
                "{f}:11: spec.topology.services[0].ap: error: unknown field (did you mean `app`?)"
            ),
            format!(
                "{f}:19: spec.workload[0].target: error: unknown service `frontnd` (did you mean `frontend`? known: frontend, reviews)"
            ),
            format!(
                "{f}:21: spec.faults[0].zoneOutage: error: unknown zone `c` (did you mean `a`? known: a, b)"
            ),
            "3 errors, 0 warnings in 1 file".to_owned(),
        ]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn findings_of_referenced_config_files_are_included() {
    let missing = VALID.replace("istio/reviews-dr.yaml", "istio/nope.yaml");
    let (out, f, _dir) = run("scenario-missing-config", &missing);
    let lines = stdout(&out);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!(
            "{f}:17: spec.mesh.config[0].file: error: cannot read istio/nope.yaml: "
        )),
        "{lines:#?}"
    );
    assert_eq!(out.status.code(), Some(1));

    let v3 = VALID.replace("v2: { instances: [{ zone: b", "v3: { instances: [{ zone: b");
    let (out, f, dir) = run("scenario-subset", &v3);
    let dr = dir.path("istio/reviews-dr.yaml").display().to_string();
    assert_eq!(
        stdout(&out),
        [
            format!(
                "{dr}:8: spec.subsets[1].labels: warning: subset `v2` (version=v2) selects no version of reviews (versions: v1, v3): traffic routed to it finds no instance"
            ),
            "0 errors, 1 warning in 1 file".to_owned(),
        ],
        "{f}"
    );
    assert_eq!(out.status.code(), Some(0));
}
