//! `meshrig validate`: one invalid fixture per error class (exit 1 and the exact
//! finding line), the warning-only classes (exit 0), sets of files and directories,
//! usage errors (exit 2), and every public Istio sample.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::{TempDir, meshrig, run_with_limit};

mod field_table;
mod scenario;

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `meshrig validate ARGS...` from the repository root.
fn validate(args: &[&str]) -> Output {
    let mut cmd = meshrig();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("validate")
        .args(args);
    run_with_limit(&mut cmd, LIMIT)
}

fn stdout(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts the exit code and the exact stdout lines (findings, then the summary).
fn expect(args: &[&str], code: i32, lines: &[&str]) {
    let out = validate(args);
    let got = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "meshrig validate {args:?}\nstdout: {got:#?}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(got, lines, "meshrig validate {args:?}");
}

const DIR: &str = "tests/data/config";

fn fixture(name: &str) -> String {
    format!("{DIR}/{name}")
}

#[test]
fn unknown_field_names_the_closest_known_field() {
    let f = fixture("unknown-field.yaml");
    expect(
        &[&f],
        1,
        &[
            &format!(
                "{f}:15: spec.http[0].retries.perTryTimout: error: unknown field (did you mean `perTryTimeout`?)"
            ),
            "1 error, 0 warnings in 1 file",
        ],
    );
}

#[test]
fn bad_duration_is_an_error() {
    let f = fixture("bad-duration.yaml");
    expect(
        &[&f],
        1,
        &[
            &format!(
                "{f}:13: spec.http[0].timeout: error: invalid duration \"10 seconds\" \
                 (write a number and a unit, e.g. 5s, 500ms, 1.5s, 1m)"
            ),
            "1 error, 0 warnings in 1 file",
        ],
    );
}

#[test]
fn negative_duration_is_an_error() {
    let f = fixture("negative-duration.yaml");
    expect(
        &[&f],
        1,
        &[
            &format!(
                "{f}:11: spec.trafficPolicy.outlierDetection.interval: error: negative duration \"-30s\" \
                 (durations must be zero or positive, e.g. 1s)"
            ),
            "1 error, 0 warnings in 1 file",
        ],
    );
}

#[test]
fn invalid_regex_is_an_error() {
    let f = fixture("invalid-regex.yaml");
    expect(
        &[&f],
        1,
        &[
            &format!(
                "{f}:12: spec.http[0].match[0].uri.regex: error: invalid regex \"/api/(v1|v2\": unclosed group \
                 (RE2 syntax, e.g. \"^/api/v[0-9]+$\")"
            ),
            "1 error, 0 warnings in 1 file",
        ],
    );
}

#[test]
fn percentage_out_of_range_is_an_error() {
    let f = fixture("percent-out-of-range.yaml");
    expect(
        &[&f],
        1,
        &[
            &format!(
                "{f}:14: spec.http[0].fault.abort.percentage.value: error: percentage 120 is out of range (0..=100)"
            ),
            "1 error, 0 warnings in 1 file",
        ],
    );
}

#[test]
fn weights_not_summing_to_100_are_an_error() {
    let f = fixture("weights-not-100.yaml");
    expect(
        &[&f],
        1,
        &[
            &format!(
                "{f}:10: spec.http[0].route: error: weights of the 2 destinations sum to 110 (they must add up to 100)"
            ),
            "1 error, 0 warnings in 1 file",
        ],
    );
}

#[test]
fn subset_missing_from_the_destination_rule_is_an_error() {
    let f = fixture("undefined-subset.yaml");
    expect(
        &[&f],
        1,
        &[
            &format!(
                "{f}:27: spec.http[0].route[0].destination.subset: error: subset `v3` is not defined by \
                 DestinationRule default/reviews ({f}:7) for reviews.default.svc.cluster.local (defined: v1, v2)"
            ),
            "1 error, 0 warnings in 1 file",
        ],
    );
}

#[test]
fn wildcard_host_bound_to_mesh_is_an_error() {
    let f = fixture("mesh-wildcard-host.yaml");
    expect(
        &[&f],
        1,
        &[
            &format!(
                "{f}:8: spec.hosts[0]: error: wildcard host `*` is not allowed for a VirtualService bound to the \
                 mesh gateway (name the hosts, or bind it only to ingress gateways with `gateways`)"
            ),
            "1 error, 0 warnings in 1 file",
        ],
    );
}

#[test]
fn three_errors_give_three_lines() {
    let f = fixture("three-errors.yaml");
    expect(
        &[&f],
        1,
        &[
            &format!(
                "{f}:13: spec.http[0].match[0].headers.end-user.regex: error: invalid regex \"*jason\": \
                 repetition operator missing expression (RE2 syntax, e.g. \"^/api/v[0-9]+$\")"
            ),
            &format!(
                "{f}:17: spec.http[0].timeout: error: unknown unit \"x\" in duration \"1.5x\" \
                 (units: h, m, s, ms, us, ns; e.g. 5s)"
            ),
            &format!(
                "{f}:19: spec.http[0].mirrorPercentage.value: error: percentage 101 is out of range (0..=100)"
            ),
            "3 errors, 0 warnings in 1 file",
        ],
    );
}

#[test]
fn unchecked_subset_reference_is_a_warning() {
    let f = fixture("subset-without-destination-rule.yaml");
    expect(
        &[&f],
        0,
        &[
            &format!(
                "{f}:13: spec.http[0].route[0].destination.subset: warning: subset `v1` cannot be checked: the set \
                 has no DestinationRule for details.default.svc.cluster.local (validate this file together with \
                 the one that defines the subset)"
            ),
            "0 errors, 1 warning in 1 file",
        ],
    );
}

#[test]
fn two_virtual_services_for_one_host_is_a_warning() {
    let f = fixture("two-virtual-services-one-host.yaml");
    expect(
        &[&f],
        0,
        &[
            &format!(
                "{f}:20: spec.hosts[0]: warning: host ratings.default.svc.cluster.local is also claimed by \
                 VirtualService default/ratings-a ({f}:5) on gateway `mesh`; for sidecars only one of them takes \
                 effect (keep a host's routes in one VirtualService)"
            ),
            "0 errors, 1 warning in 1 file",
        ],
    );
}

#[test]
fn the_same_kind_and_name_twice_is_a_warning() {
    let f = fixture("duplicate-name.yaml");
    expect(
        &[&f],
        0,
        &[
            &format!(
                "{f}:14: metadata.name: warning: PeerAuthentication foo/default is defined again, replacing the \
                 definition at {f}:5 (the later one wins, as with kubectl apply)"
            ),
            "0 errors, 1 warning in 1 file",
        ],
    );
}

#[test]
fn snake_case_is_valid_and_other_kinds_are_noted() {
    let f = fixture("snake-case.yaml");
    expect(
        &[&f],
        0,
        &[
            &format!("{f}:30: kind: note: skipped ConfigMap (v1): not a kind meshrig reads"),
            "0 errors, 0 warnings, 1 note in 1 file",
        ],
    );
}

#[test]
fn files_given_together_form_one_set() {
    let dr = fixture("set/destination-rule.yaml");
    let vs = fixture("set/virtual-service.yaml");
    expect(&[&dr, &vs], 0, &["0 errors, 0 warnings in 2 files"]);
    expect(&[&fixture("set")], 0, &["0 errors, 0 warnings in 2 files"]);
    // Alone, the VirtualService's subsets cannot be checked.
    let out = validate(&[&vs]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).last().map(String::as_str),
        Some("0 errors, 2 warnings in 1 file")
    );
}

#[test]
fn errors_of_several_files_are_all_reported() {
    let a = fixture("bad-duration.yaml");
    let b = fixture("negative-duration.yaml");
    let out = validate(&[&a, &b]);
    assert_eq!(out.status.code(), Some(1));
    let lines = stdout(&out);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with(&format!("{a}:13: ")), "{lines:#?}");
    assert!(lines[1].starts_with(&format!("{b}:11: ")), "{lines:#?}");
    assert_eq!(lines[2], "2 errors, 0 warnings in 2 files");
}

#[test]
fn unreadable_input_is_a_usage_error_naming_the_path() {
    let out = validate(&["tests/data/config/no-such-file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read tests/data/config/no-such-file.yaml"),
        "{err}"
    );

    let empty = TempDir::new("validate-empty");
    std::fs::write(empty.path("notes.txt"), "not yaml").expect("write");
    let dir = empty.0.display().to_string();
    let out = validate(&[&dir]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no *.yaml or *.yml files in {dir}")),
        "{err}"
    );

    let out = validate(&[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no paths at all is a usage error"
    );
}

#[test]
fn yaml_syntax_errors_point_at_the_line() {
    let tmp = TempDir::new("validate-syntax");
    std::fs::write(
        tmp.path("broken.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: [x\n",
    )
    .expect("write");
    let path = tmp.path("broken.yaml").display().to_string();
    let out = validate(&[&path]);
    assert_eq!(out.status.code(), Some(1));
    let lines = stdout(&out);
    assert!(lines[0].starts_with(&format!("{path}:")), "{lines:#?}");
    assert!(
        lines[0].contains(": (yaml): error: invalid YAML: "),
        "{lines:#?}"
    );
}

fn istio_samples() -> std::path::PathBuf {
    let dir = match std::env::var_os("MESHRIG_ISTIO_SAMPLES") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/istio"),
    };
    assert!(dir.is_dir(), "Istio samples not found at {}", dir.display());
    dir
}

#[test]
fn every_istio_sample_validates_alone() {
    let dir = istio_samples();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("list samples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    names.sort();
    assert!(names.len() >= 80, "found only {} samples", names.len());
    for path in names {
        let p = path.display().to_string();
        let out = validate(&[&p]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{p}:\n{}",
            stdout(&out).join("\n")
        );
        assert!(!stdout(&out).iter().any(|l| l.contains(": error: ")), "{p}");
    }
}

#[test]
fn all_istio_samples_validate_as_one_directory() {
    let dir = istio_samples().display().to_string();
    let out = validate(&[&dir]);
    let lines = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{lines:#?}");
    let summary = lines.last().expect("summary");
    assert!(summary.starts_with("0 errors, "), "{summary}");
}
