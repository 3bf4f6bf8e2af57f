//! `ca: rotate`: the syntax, its errors (file:line, field path, the fix) and the
//! warning about an overlap shorter than twice the certificate TTL.

use super::{BASE, findings};
use crate::model::FaultKind;

const S: u64 = 1_000_000_000;

/// BASE with a 10 s certificate TTL (line 19) and `faults` (from line 21).
fn with_faults(faults: &[&str]) -> String {
    let mut text = format!("{BASE}  mesh: {{ ca: {{ certTtl: 10s }} }}\n  faults:\n");
    for f in faults {
        text.push_str(&format!("    - {f}\n"));
    }
    text
}

#[test]
fn a_rotation_parses_with_its_overlap_and_no_for() {
    let text = with_faults(&["{ at: 20s, ca: rotate, overlap: 30s }"]);
    let (s, f) = crate::parse("s.yaml", &text);
    assert!(f.is_empty(), "{f:?}");
    let s = s.expect("valid");
    assert_eq!(s.faults.len(), 1);
    let fault = &s.faults[0];
    assert_eq!((fault.at_ns, fault.for_ns, fault.line), (20 * S, None, 21));
    assert_eq!(fault.kind, FaultKind::CaRotate { overlap_ns: 30 * S });
}

#[test]
fn a_rotation_needs_an_overlap() {
    assert_eq!(
        findings(&with_faults(&["{ at: 20s, ca: rotate }"])),
        [
            "s.yaml:21: spec.faults[0].overlap: error: missing required field `overlap` (how long the old and new roots are both trusted, e.g. overlap: 48h (at least twice ca.certTtl))"
        ]
    );
}

#[test]
fn a_rotation_refuses_for() {
    let text = with_faults(&["at: 20s\n      ca: rotate\n      overlap: 30s\n      for: 5m"]);
    let (s, _) = crate::parse("s.yaml", &text);
    assert!(s.is_none());
    assert_eq!(
        findings(&text),
        [
            "s.yaml:24: spec.faults[0].for: error: `for` is not allowed with `ca: rotate`: a rotation ends by itself when the old root leaves the bundle, `overlap` after `at` (remove `for`)"
        ]
    );
    // `for: 0` is the same mistake, reported once.
    let got = findings(&with_faults(&[
        "{ at: 20s, ca: rotate, overlap: 30s, for: 0 }",
    ]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("`for` is not allowed with `ca: rotate`"));
}

#[test]
fn a_zero_overlap_is_an_error() {
    assert_eq!(
        findings(&with_faults(&["{ at: 20s, ca: rotate, overlap: 0s }"])),
        [
            "s.yaml:21: spec.faults[0].overlap: error: `overlap: 0` drops the old root the moment the new one exists, so every certificate it signed stops being trusted (give at least twice ca.certTtl, e.g. overlap: 48h)"
        ]
    );
    let got = findings(&with_faults(&["{ at: 20s, ca: rotate, overlap: -5s }"]));
    assert!(got[0].contains("negative duration"), "{got:?}");
}

#[test]
fn an_overlap_under_twice_the_ttl_is_a_warning_only() {
    let text = with_faults(&["{ at: 20s, ca: rotate, overlap: 15s }"]);
    assert_eq!(
        findings(&text),
        [
            "s.yaml:21: spec.faults[0].overlap: warning: overlap 15s is shorter than twice ca.certTtl (10s): workloads may not have renewed (and learned the new root) before it signs, and certificates signed by the old root may outlive it in the bundle, so expect mtls_handshake_failed until renewals catch up (give overlap: 20s or more)"
        ]
    );
    let (s, _) = crate::parse("s.yaml", &text);
    assert!(s.is_some(), "a warning does not fail the parse");
    // Exactly twice the TTL is enough.
    assert!(findings(&with_faults(&["{ at: 20s, ca: rotate, overlap: 20s }"])).is_empty());
    // Against the default TTL (24h), an overlap of seconds warns too.
    let default_ttl = format!("{BASE}  faults:\n    - {{ at: 20s, ca: rotate, overlap: 30s }}\n");
    let got = findings(&default_ttl);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("warning: overlap 30s is shorter than twice ca.certTtl (24h)"),
        "{got:?}"
    );
}

#[test]
fn overlap_belongs_to_rotate_only() {
    assert_eq!(
        findings(&with_faults(&["{ at: 20s, ca: outage, overlap: 30s }"])),
        [
            "s.yaml:21: spec.faults[0].overlap: error: `overlap` belongs to `ca: rotate`; a CA outage lasts `for` (remove `overlap`)"
        ]
    );
    assert_eq!(
        findings(&with_faults(&[
            "{ at: 20s, kill: { service: reviews }, overlap: 30s }"
        ])),
        [
            "s.yaml:21: spec.faults[0].overlap: error: `overlap` belongs to `ca: rotate` only (remove it, or write `ca: rotate`)"
        ]
    );
    assert_eq!(
        findings(&with_faults(&["{ at: 20s, ca: rotation, overlap: 30s }"])),
        [
            "s.yaml:21: spec.faults[0].ca: error: expected `outage` or `rotate`, found the string \"rotation\" (write `ca: outage` with an optional `for`, or `ca: rotate` with `overlap`)"
        ]
    );
    // The outage keeps its own syntax.
    let (s, f) = crate::parse(
        "s.yaml",
        &with_faults(&["{ at: 20s, ca: outage, for: 5s }"]),
    );
    assert!(f.is_empty(), "{f:?}");
    assert_eq!(s.expect("valid").faults[0].kind, FaultKind::CaOutage);
}

#[test]
fn rotations_run_one_at_a_time() {
    // The second starts before the first's old root is dropped (at 50s); the third
    // starts exactly then, which is allowed. Order in the file does not matter.
    let text = with_faults(&[
        "{ at: 50s, ca: rotate, overlap: 20s }",
        "{ at: 20s, ca: rotate, overlap: 30s }",
        "{ at: 45s, ca: rotate, overlap: 20s }",
    ]);
    assert_eq!(
        findings(&text),
        [
            "s.yaml:23: spec.faults[2].at: error: this rotation starts while the one at line 22 is under way (its old root leaves the bundle at 50s): the CA rotates one root at a time (start it at 50s or later)"
        ]
    );
    let ok = with_faults(&[
        "{ at: 50s, ca: rotate, overlap: 20s }",
        "{ at: 20s, ca: rotate, overlap: 30s }",
    ]);
    assert!(findings(&ok).is_empty(), "{:?}", findings(&ok));
}

#[test]
fn assertions_may_count_the_rotation_events() {
    let text = format!(
        "{}  assertions:\n    - \"events(root_rotation_started) == 1\"\n    - \"events(root_signing_switched) == 1\"\n    - \"events(root_retired) == 1\"\n",
        with_faults(&["{ at: 20s, ca: rotate, overlap: 30s }"])
    );
    assert!(findings(&text).is_empty(), "{:?}", findings(&text));
}
