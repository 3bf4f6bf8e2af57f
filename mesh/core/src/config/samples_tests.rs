//! Every public Istio sample in `../shared/testdata/istio/` (beside the repository)
//! must load with zero errors, alone and in the sets that belong together.
//! `MESHRIG_ISTIO_SAMPLES` overrides where they are.

use super::{ConfigSet, Finding, Severity};

fn samples_dir() -> std::path::PathBuf {
    let dir = crate::test_support::istio_samples_dir();
    assert!(dir.is_dir(), "Istio samples not found at {}", dir.display());
    dir
}

fn read(names: &[&str]) -> Vec<(String, String)> {
    let dir = samples_dir();
    names
        .iter()
        .map(|n| {
            let text =
                std::fs::read_to_string(dir.join(n)).unwrap_or_else(|e| panic!("read {n}: {e}"));
            ((*n).to_owned(), text)
        })
        .collect()
}

fn errors(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect()
}

#[test]
fn every_sample_loads_alone_without_errors() {
    let mut names: Vec<String> = std::fs::read_dir(samples_dir())
        .expect("list samples")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 80,
        "expected the full sample set, found {}",
        names.len()
    );
    let mut bad = Vec::new();
    for name in &names {
        let (set, findings) = ConfigSet::load(&read(&[name.as_str()]));
        bad.extend(errors(&findings));
        assert!(!set.is_empty(), "{name}: nothing was read");
    }
    assert!(bad.is_empty(), "errors in samples:\n{}", bad.join("\n"));
}

fn all_sample_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(samples_dir())
        .expect("list samples")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    names.sort();
    names
}

#[test]
fn all_samples_as_one_set_have_no_errors() {
    let names = all_sample_names();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (set, findings) = ConfigSet::load(&read(&refs));
    assert_eq!(errors(&findings), Vec::<String>::new());
    assert!(set.virtual_services().len() > 20);
}

#[test]
fn bookinfo_with_its_destination_rules_is_clean() {
    let (set, findings) = ConfigSet::load(&read(&[
        "bookinfo.yaml",
        "bookinfo-gateway.yaml",
        "bookinfo-destination-rule-all.yaml",
        "bookinfo-virtual-service-all-v1.yaml",
    ]));
    let all: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert!(all.is_empty(), "{all:#?}");
    assert_eq!(set.destination_rules().len(), 4);
    assert_eq!(set.virtual_services().len(), 5);
    assert!(set.services().iter().any(|s| s.name == "reviews"));
    assert!(
        set.workloads()
            .iter()
            .any(|w| w.name == "reviews-v3" && w.service_account == "bookinfo-reviews")
    );
}

#[test]
fn tcp_echo_steps_replace_the_virtual_service() {
    let (set, findings) = ConfigSet::load(&read(&[
        "tcp-echo-services.yaml",
        "tcp-echo-all-v1.yaml",
        "tcp-echo-20-v2.yaml",
    ]));
    let all: Vec<String> = findings
        .iter()
        .map(|f| format!("{}: {f}", f.severity))
        .collect();
    assert_eq!(
        all,
        [
            "warning: tcp-echo-20-v2.yaml:18: metadata.name: VirtualService default/tcp-echo is defined again, \
          replacing the definition at tcp-echo-all-v1.yaml:47 (the later one wins, as with kubectl apply)"
        ]
    );
    let tcp = &set.virtual_services()[0].spec.tcp[0];
    assert_eq!(tcp.route.len(), 2);
}
