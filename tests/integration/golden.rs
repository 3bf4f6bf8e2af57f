//! Golden decision traces: `meshrig route --json` on Istio's own samples, compared with
//! the committed files in `tests/golden/`. A change to routing semantics shows up here
//! as a diff to review. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test integration golden`.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{meshrig, run_with_limit};

/// (golden file, sample files, extra `meshrig route` arguments)
const CASES: &[(&str, &[&str], &[&str])] = &[
    (
        "reviews-jason-v2",
        &[
            "bookinfo-virtual-service-reviews-jason-v2-v3.yaml",
            "bookinfo-destination-rule-all.yaml",
        ],
        &["--host", "reviews", "-H", "end-user: jason"],
    ),
    (
        "reviews-anonymous-v3",
        &[
            "bookinfo-virtual-service-reviews-jason-v2-v3.yaml",
            "bookinfo-destination-rule-all.yaml",
        ],
        &["--host", "reviews:9080", "--path", "/reviews/0"],
    ),
    (
        "reviews-80-20-split",
        &[
            "bookinfo-virtual-service-reviews-80-20.yaml",
            "bookinfo-destination-rule-all.yaml",
        ],
        &["--host", "reviews", "--seed", "7"],
    ),
    (
        "ratings-delay-jason",
        &["bookinfo-virtual-service-ratings-test-delay.yaml"],
        &["--host", "ratings", "-H", "end-user: jason"],
    ),
    (
        "ratings-abort-jason",
        &["bookinfo-virtual-service-ratings-test-abort.yaml"],
        &["--host", "ratings", "-H", "end-user: jason"],
    ),
    (
        "all-v1-productpage",
        &["bookinfo-virtual-service-all-v1.yaml"],
        &["--host", "productpage", "--path", "/productpage"],
    ),
    (
        "no-virtual-service-passthrough",
        &["bookinfo-virtual-service-reviews-80-20.yaml"],
        &["--host", "details:9080"],
    ),
    (
        "productpage-viewer-post-denied",
        &["docs-authz-http-productpage-viewer.yaml"],
        &[
            "--host",
            "productpage",
            "--method",
            "POST",
            "--source-principal",
            "spiffe://cluster.local/ns/default/sa/sleep",
        ],
    ),
];

/// Samples by a path relative to the repository root, so traces hold the same
/// `file:line` on every clone (CI has `shared/` beside the repository).
fn sample(name: &str) -> String {
    format!("../shared/testdata/istio/{name}")
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"))
}

#[test]
fn decision_traces_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for (name, samples, args) in CASES {
        let mut cmd = meshrig();
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("route")
            .arg("--json");
        for s in *samples {
            cmd.arg("--config").arg(sample(s));
        }
        cmd.args(*args);
        let out = run_with_limit(&mut cmd, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let actual: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("route --json prints JSON");
        let path = golden_path(name);
        if update {
            let mut text = serde_json::to_string_pretty(&actual).unwrap();
            text.push('\n');
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let expected: serde_json::Value = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).expect("golden file is JSON"),
            Err(e) => panic!(
                "{}: {e}; create it with UPDATE_GOLDEN=1 cargo test --test integration golden",
                path.display()
            ),
        };
        if actual != expected {
            mismatches.push(format!(
                "{name}: trace differs from {}\nactual:\n{}",
                path.display(),
                serde_json::to_string_pretty(&actual).unwrap()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\n(if the change is intended: UPDATE_GOLDEN=1 cargo test --test integration golden)",
        mismatches.join("\n\n")
    );
}
