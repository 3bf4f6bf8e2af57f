//! Whole-file tests: an example parses into the expected model; every error class
//! reports file:line and field path; `load` reads and checks configuration.

mod errors;
mod example;
mod loading;
mod rotation;

use mesh_core::config::Finding;

/// The findings of `text` as displayed, with the severity.
pub(crate) fn findings(text: &str) -> Vec<String> {
    let (_, f) = crate::parse("s.yaml", text);
    f.iter().map(show).collect()
}

pub(crate) fn show(f: &Finding) -> String {
    format!(
        "{}:{}: {}: {}: {}",
        f.file, f.line, f.path, f.severity, f.message
    )
}

/// A small valid scenario; tests replace pieces of it.
pub(crate) const BASE: &str = r#"apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: base }
spec:
  duration: 60s
  topology:
    zones: [a, b]
    services:
      - name: frontend
        instances: [{ zone: a, count: 2 }]
        app:
          calls: [{ service: reviews, path: /reviews }]
      - name: reviews
        versions:
          v1: { instances: [{ zone: a, count: 2 }] }
          v2: { instances: [{ zone: b, count: 1 }] }
  workload:
    - { target: frontend, rate: { constant: 100/s } }
"#;
