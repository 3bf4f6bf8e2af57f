use std::collections::BTreeMap;

use super::{BASE, show};

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets:
  - name: v1
    labels: { version: v1 }
  - name: v3
    labels: { version: v3 }
";

fn with_config(config: &str) -> String {
    BASE.replace(
        "  workload:",
        &format!("  mesh:\n    config:\n{config}  workload:"),
    )
}

fn reader(files: &[(&str, &str)]) -> impl FnMut(&str) -> Result<String, String> {
    let files: BTreeMap<String, String> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |path: &str| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| "No such file or directory".to_owned())
    }
}

#[test]
fn config_files_load_relative_to_the_scenario_and_subsets_are_checked() {
    let text = with_config("      - { file: istio/dr.yaml }\n");
    let mut read = reader(&[("istio/dr.yaml", DR)]);
    let loaded = crate::load("scenarios/s.yaml", &text, &mut read).expect("valid");
    assert_eq!(loaded.config.destination_rules().len(), 1);
    assert_eq!(loaded.config_sources[0].0, "scenarios/istio/dr.yaml");
    let got: Vec<String> = loaded.findings.iter().map(show).collect();
    assert_eq!(
        got,
        [
            "scenarios/istio/dr.yaml:10: spec.subsets[1].labels: warning: subset `v3` (version=v3) selects no version of reviews (versions: v1, v2): traffic routed to it finds no instance"
        ]
    );
    let mut bytes = text.clone().into_bytes();
    bytes.extend_from_slice(DR.as_bytes());
    assert_eq!(loaded.hash, mesh_core::compile::snapshot::fnv1a64(&bytes));
}

#[test]
fn an_unreadable_config_file_is_an_error_at_its_scenario_line() {
    let text = with_config("      - { file: istio/missing.yaml }\n");
    let err = crate::load("s.yaml", &text, &mut reader(&[])).expect_err("invalid");
    let got: Vec<String> = err.iter().map(show).collect();
    assert_eq!(
        got,
        [
            "s.yaml:19: spec.mesh.config[0].file: error: cannot read istio/missing.yaml: No such file or directory (paths are relative to the scenario file)"
        ]
    );
}

#[test]
fn findings_in_inline_config_point_into_the_scenario() {
    let inline = "      - inline: |\n          apiVersion: networking.istio.io/v1\n          kind: DestinationRule\n          metadata: { name: r }\n          spec:\n            hots: reviews\n";
    let err = crate::load("s.yaml", &with_config(inline), &mut reader(&[])).expect_err("invalid");
    let got: Vec<String> = err.iter().map(show).collect();
    assert!(
        got.iter().any(|f| f
            .starts_with("s.yaml:24: spec.mesh.config[0].inline.spec.hots: error: unknown field")),
        "{got:#?}"
    );
}

#[test]
fn fault_configs_are_loaded_per_fault() {
    let text = format!("{BASE}  faults:\n    - {{ at: 10s, config: [{{ file: dr.yaml }}] }}\n");
    let loaded = crate::load("s.yaml", &text, &mut reader(&[("dr.yaml", DR)])).expect("valid");
    assert_eq!(loaded.fault_configs.len(), 1);
    assert_eq!(loaded.fault_configs[0].0, 0);
    assert_eq!(loaded.fault_configs[0].1.destination_rules().len(), 1);
    assert!(loaded.config.is_empty());
}

#[test]
fn scenario_documents_are_recognised() {
    assert!(crate::is_scenario(BASE));
    assert!(
        crate::is_scenario("kind: Scenario\nspec: [\n"),
        "broken YAML still counts"
    );
    assert!(!crate::is_scenario(DR));
}

/// A `config` fault applies on top of `spec.mesh.config` (as `kubectl apply`): its
/// VirtualService joins the scenario's DestinationRule, which stays, and replacing a
/// resource of the scenario is not reported as a problem.
#[test]
fn a_config_fault_applies_on_top_of_the_mesh_config() {
    const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
  - route:
    - { destination: { host: reviews, subset: v3 } }
";
    let text = with_config("      - { file: istio/dr.yaml }\n").replace(
        "  workload:",
        "  faults:\n    - { at: 10s, config: [ { file: istio/vs.yaml }, { file: istio/dr.yaml } ] }\n  workload:",
    );
    let mut read = reader(&[("istio/dr.yaml", DR), ("istio/vs.yaml", VS)]);
    let loaded = crate::load("s.yaml", &text, &mut read)
        .unwrap_or_else(|f| panic!("{:?}", f.iter().map(show).collect::<Vec<_>>()));
    let (_, set) = &loaded.fault_configs[0];
    assert_eq!(
        set.destination_rules().len(),
        1,
        "the DestinationRule is replaced, not doubled"
    );
    assert_eq!(set.virtual_services().len(), 1);
    assert!(
        loaded
            .findings
            .iter()
            .all(|f| !f.message.contains("defined again")),
        "{:?}",
        loaded.findings.iter().map(show).collect::<Vec<_>>()
    );
}
