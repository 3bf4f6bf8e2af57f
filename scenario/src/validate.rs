//! Cross-reference checks over a decoded scenario, before anything runs: every
//! service, version and zone a field names exists; calls form no cycle; faults and
//! workloads fall inside the run; root rotations run one at a time (and an overlap
//! under twice the certificate TTL is a warning). Findings point at the line of the
//! referencing field, found in the decoder's position table.

use std::collections::{BTreeMap, BTreeSet};

use mesh_core::config::Finding;

use crate::assert::Target;
use crate::model::{FaultKind, Scenario, Selector};

/// Where the decoded items came from: the position table (field path → line) and,
/// for lists whose undecodable entries were dropped, each item's index in the file.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    pub(crate) positions: BTreeMap<String, u32>,
    pub(crate) services: Vec<usize>,
    pub(crate) workloads: Vec<usize>,
    pub(crate) faults: Vec<usize>,
    pub(crate) assertions: Vec<usize>,
}

impl Origins {
    /// The line of `path`, or of its closest recorded ancestor.
    fn line_of(&self, path: &str) -> u32 {
        let mut p = path;
        loop {
            if let Some(line) = self.positions.get(p) {
                return *line;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return 1,
            }
        }
    }
}

struct Checker<'s> {
    s: &'s Scenario,
    o: &'s Origins,
    file: &'s str,
    findings: Vec<Finding>,
}

/// Every cross-reference problem of `s`.
pub(crate) fn check(s: &Scenario, o: &Origins, file: &str) -> Vec<Finding> {
    let mut c = Checker {
        s,
        o,
        file,
        findings: Vec::new(),
    };
    c.topology();
    c.network();
    c.workloads();
    c.faults();
    c.assertions();
    c.findings
}

fn key_segment(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        format!(".{key}")
    } else {
        format!("[{key:?}]")
    }
}

impl Checker<'_> {
    fn error(&mut self, path: &str, message: String) {
        let line = self.o.line_of(path);
        self.findings
            .push(Finding::error(self.file, line, path, message));
    }

    fn warning(&mut self, path: &str, message: String) {
        let line = self.o.line_of(path);
        self.findings
            .push(Finding::warning(self.file, line, path, message));
    }

    fn zones(&self) -> Vec<&str> {
        self.s
            .topology
            .zones
            .iter()
            .map(|z| z.name.as_str())
            .collect()
    }

    fn services(&self) -> Vec<&str> {
        self.s
            .topology
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect()
    }

    fn unknown(what: &str, name: &str, known: &[&str]) -> String {
        let hint = match crate::parse::yaml::closest(name, known.iter().copied()) {
            Some(best)
                if strsim::damerau_levenshtein(best, name) <= name.chars().count() / 3 + 1 =>
            {
                format!("did you mean `{best}`? known: {}", known.join(", "))
            }
            _ if known.is_empty() => format!("no {what} is defined"),
            _ => format!("known: {}", known.join(", ")),
        };
        format!("unknown {what} `{name}` ({hint})")
    }

    fn zone(&mut self, path: &str, zone: &str) {
        let zones = self.zones();
        if !zones.contains(&zone) {
            let msg = Self::unknown("zone", zone, &zones);
            self.error(path, msg);
        }
    }

    /// Checks a service name; true when it exists.
    fn service(&mut self, path: &str, service: &str) -> bool {
        let services = self.services();
        if services.contains(&service) {
            return true;
        }
        let msg = Self::unknown("service", service, &services);
        self.error(path, msg);
        false
    }

    fn version(&mut self, path: &str, service: &str, version: &str) {
        let Some(svc) = self.s.service(service) else {
            return;
        };
        let versions: Vec<&str> = svc.versions.iter().map(|v| v.name.as_str()).collect();
        if !versions.contains(&version) {
            let msg = Self::unknown(&format!("version of {service}"), version, &versions);
            self.error(path, msg);
        }
    }

    fn topology(&mut self) {
        if self.s.topology.services.is_empty() && self.o.positions.contains_key("spec.topology") {
            self.warning(
                "spec.topology.services",
                "no services (the workload needs a target)".to_owned(),
            );
        }
        for (k, svc) in self.s.topology.services.iter().enumerate() {
            let base = format!(
                "spec.topology.services[{}]",
                self.o.services.get(k).copied().unwrap_or(k)
            );
            let shorthand = self.o.positions.contains_key(&format!("{base}.instances"));
            for v in &svc.versions {
                let vbase = if shorthand {
                    base.clone()
                } else {
                    format!("{base}.versions{}", key_segment(&v.name))
                };
                for (j, p) in v.placements.iter().enumerate() {
                    self.zone(&format!("{vbase}.instances[{j}].zone"), &p.zone);
                }
                for (j, call) in v.app.calls.iter().enumerate() {
                    let own = format!("{vbase}.app.calls[{j}].service");
                    let path = if self.o.positions.contains_key(&own) {
                        own
                    } else {
                        format!("{base}.app.calls[{j}].service")
                    };
                    self.service(&path, &call.service);
                }
            }
        }
        self.call_cycles();
    }

    /// A service that (transitively) calls itself would recurse forever.
    fn call_cycles(&mut self) {
        let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for svc in &self.s.topology.services {
            let out = graph.entry(svc.name.as_str()).or_default();
            for v in &svc.versions {
                out.extend(v.app.calls.iter().map(|c| c.service.as_str()));
            }
        }
        let mut reported = BTreeSet::new();
        for (k, svc) in self.s.topology.services.iter().enumerate() {
            let mut path = vec![svc.name.as_str()];
            let mut seen = BTreeSet::new();
            if let Some(cycle) = find_cycle(&graph, &mut path, &mut seen, svc.name.as_str()) {
                let members: BTreeSet<&str> = cycle.iter().copied().collect();
                if reported.insert(members) {
                    let base = format!(
                        "spec.topology.services[{}]",
                        self.o.services.get(k).copied().unwrap_or(k)
                    );
                    self.error(
                        &format!("{base}.name"),
                        format!(
                            "calls form a cycle: {} (a request would never finish)",
                            cycle.join(" → ")
                        ),
                    );
                }
            }
        }
    }

    fn network(&mut self) {
        for (i, l) in self.s.network.links.iter().enumerate() {
            let path = format!("spec.network.links[{i}].between");
            self.zone(&format!("{path}[0]"), &l.between.0);
            self.zone(&format!("{path}[1]"), &l.between.1);
        }
    }

    fn workloads(&mut self) {
        for (k, w) in self.s.workload.iter().enumerate() {
            let base = format!(
                "spec.workload[{}]",
                self.o.workloads.get(k).copied().unwrap_or(k)
            );
            self.service(&format!("{base}.target"), &w.target);
            if self.o.positions.contains_key(&format!("{base}.fromZone")) {
                self.zone(&format!("{base}.fromZone"), &w.from_zone);
            }
            if self.s.duration_ns > 0 && w.start_ns >= self.s.duration_ns {
                self.warning(
                    &format!("{base}.start"),
                    "starts after the run ends: sends nothing".to_owned(),
                );
            }
        }
    }

    fn selector(&mut self, path: &str, sel: &Selector) {
        if self.service(&format!("{path}.service"), &sel.service)
            && let Some(v) = &sel.version
        {
            self.version(&format!("{path}.version"), &sel.service, v);
        }
        if let Some(z) = &sel.zone {
            self.zone(&format!("{path}.zone"), z);
        }
    }

    fn pair(&mut self, path: &str, a: &str, b: &str) {
        let zones: Vec<String> = self.zones().into_iter().map(str::to_owned).collect();
        let services: Vec<String> = self.services().into_iter().map(str::to_owned).collect();
        let is_zone = |n: &str| zones.iter().any(|z| z == n);
        let is_service = |n: &str| services.iter().any(|s| s == n);
        let mut ok = true;
        for (i, n) in [a, b].into_iter().enumerate() {
            if !is_zone(n) && !is_service(n) {
                let known: Vec<&str> = zones.iter().chain(&services).map(String::as_str).collect();
                let msg = Self::unknown("zone or service", n, &known);
                self.error(&format!("{path}.between[{i}]"), msg);
                ok = false;
            }
        }
        if ok && is_zone(a) != is_zone(b) {
            self.error(&format!("{path}.between"), format!("`{a}` and `{b}` are not both zones or both services (name two zones or two services)"));
        }
    }

    fn faults(&mut self) {
        self.rotations_in_sequence();
        for (k, f) in self.s.faults.iter().enumerate() {
            let base = format!(
                "spec.faults[{}]",
                self.o.faults.get(k).copied().unwrap_or(k)
            );
            match &f.kind {
                FaultKind::Kill(sel) => self.selector(&format!("{base}.kill"), sel),
                FaultKind::Restart(sel) => self.selector(&format!("{base}.restart"), sel),
                FaultKind::ClockSkew { selector, .. } => {
                    self.selector(&format!("{base}.clockSkew"), selector)
                }
                FaultKind::App { selector, .. } => self.selector(&format!("{base}.app"), selector),
                FaultKind::ZoneOutage { zone } => self.zone(&format!("{base}.zoneOutage"), zone),
                FaultKind::Partition { a, b, .. } => self.pair(&format!("{base}.partition"), a, b),
                FaultKind::LinkLatency { a, b, .. } => {
                    self.pair(&format!("{base}.linkLatency"), a, b)
                }
                FaultKind::LinkLoss { a, b, .. } => self.pair(&format!("{base}.linkLoss"), a, b),
                FaultKind::Hold { a, b } => self.pair(&format!("{base}.hold"), a, b),
                FaultKind::CaRotate { overlap_ns } => self.rotation_overlap(&base, *overlap_ns),
                FaultKind::CaOutage | FaultKind::ControlPlaneOutage | FaultKind::Config(_) => {}
            }
            if self.s.duration_ns > 0 && f.at_ns >= self.s.duration_ns {
                self.warning(
                    &format!("{base}.at"),
                    "after the end of the run: it never happens".to_owned(),
                );
            }
        }
    }

    /// An overlap under twice the workload TTL lets handshakes fail: a workload that
    /// renews at half its TTL may not hold the new root when certificates signed by
    /// it appear (at `at + overlap/2`), and a certificate signed by the old root just
    /// before then may outlive the old root's place in the bundle (`at + overlap`).
    fn rotation_overlap(&mut self, base: &str, overlap_ns: u64) {
        let ttl_ns = self.s.mesh.cert_ttl_ns;
        if overlap_ns < ttl_ns.saturating_mul(2) {
            self.warning(
                &format!("{base}.overlap"),
                format!(
                    "overlap {} is shorter than twice ca.certTtl ({}): workloads may not have \
                     renewed (and learned the new root) before it signs, and certificates \
                     signed by the old root may outlive it in the bundle, so expect \
                     mtls_handshake_failed until renewals catch up (give overlap: {} or more)",
                    show_ns(overlap_ns),
                    show_ns(ttl_ns),
                    show_ns(ttl_ns.saturating_mul(2))
                ),
            );
        }
    }

    /// The CA runs one rotation at a time: a rotation may start when the previous
    /// one's old root has left the bundle (`at + overlap`), not before.
    fn rotations_in_sequence(&mut self) {
        let mut rotations: Vec<(u64, u64, u32, usize)> = self
            .s
            .faults
            .iter()
            .enumerate()
            .filter_map(|(k, f)| match f.kind {
                FaultKind::CaRotate { overlap_ns } => Some((f.at_ns, overlap_ns, f.line, k)),
                _ => None,
            })
            .collect();
        rotations.sort_by_key(|&(at, _, line, _)| (at, line));
        // The last rotation the CA would accept: a refused one never happens, so the
        // next is checked against the one before it.
        let mut accepted: Option<(u64, u32)> = None;
        for (at, overlap, line, k) in rotations {
            match accepted {
                Some((done, prev_line)) if at < done => {
                    let base = format!(
                        "spec.faults[{}]",
                        self.o.faults.get(k).copied().unwrap_or(k)
                    );
                    self.error(
                        &format!("{base}.at"),
                        format!(
                            "this rotation starts while the one at line {prev_line} is under way \
                             (its old root leaves the bundle at {}): the CA rotates one root at a \
                             time (start it at {} or later)",
                            show_ns(done),
                            show_ns(done)
                        ),
                    );
                }
                _ => accepted = Some((at.saturating_add(overlap), line)),
            }
        }
    }

    fn assertions(&mut self) {
        for (k, a) in self.s.assertions.iter().enumerate() {
            let path = format!(
                "spec.assertions[{}]",
                self.o.assertions.get(k).copied().unwrap_or(k)
            );
            let e = &a.expr;
            let label = format!("in {:?}: ", a.text);
            let before = self.findings.len();
            match &e.target {
                Target::Service(s) => {
                    self.service(&path, s);
                }
                Target::Version { service, version } => {
                    if self.service(&path, service) {
                        self.version(&path, service, version);
                    }
                }
                Target::Edge { caller, callee } => {
                    let caller_ok = caller == "client" || self.service(&path, caller);
                    if self.service(&path, callee) && caller_ok {
                        let calls = if caller == "client" {
                            self.s.workload.iter().any(|w| &w.target == callee)
                        } else {
                            self.s.service(caller).is_some_and(|s| {
                                s.versions
                                    .iter()
                                    .any(|v| v.app.calls.iter().any(|c| &c.service == callee))
                            })
                        };
                        if !calls {
                            self.warning(&path, format!("{label}`{caller}` never calls `{callee}`: this edge has no traffic"));
                        }
                    }
                }
                Target::EventKind(kind) if !EVENT_KINDS.contains(&kind.as_str()) => {
                    let closest = EVENT_KINDS
                        .iter()
                        .min_by_key(|k| strsim::levenshtein(k, kind))
                        .copied()
                        .unwrap_or("ejection");
                    self.error(
                        &path,
                        format!(
                            "unknown event kind `{kind}` (did you mean `{closest}`? the kinds are listed in docs/results.md)"
                        ),
                    );
                }
                Target::All | Target::Client | Target::EventKind(_) => {}
            }
            for f in &mut self.findings[before..] {
                if f.is_error() {
                    f.message.insert_str(0, &label);
                }
            }
            if let Some(w) = e.window
                && self.s.duration_ns > 0
                && w.from_ns >= self.s.duration_ns
            {
                self.error(
                    &path,
                    format!("{label}the window starts after the run ends"),
                );
            }
        }
    }
}

/// A duration as scenario files write it (`30s`, `1h`, `1m30s`).
fn show_ns(ns: u64) -> String {
    results::units::format_duration(std::time::Duration::from_nanos(ns))
}

/// A cycle through `start` reachable from the last node of `path`, if any.
fn find_cycle<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    path: &mut Vec<&'a str>,
    seen: &mut BTreeSet<&'a str>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    let last = *path.last()?;
    for &next in graph.get(last).into_iter().flatten() {
        if next == start {
            let mut cycle = path.clone();
            cycle.push(start);
            return Some(cycle);
        }
        if !seen.insert(next) {
            continue;
        }
        path.push(next);
        if let Some(c) = find_cycle(graph, path, seen, start) {
            return Some(c);
        }
        path.pop();
    }
    None
}

/// Every event kind a driver records, logged or only counted (docs/results.md).
pub const EVENT_KINDS: [&str; 29] = [
    "authz_denied",
    "breaker_overflow",
    "cert_expired",
    "cert_issued",
    "cert_renewal_failed",
    "cert_request_failed",
    "config_applied",
    "config_converged",
    "config_push",
    "config_version",
    "csr",
    "ejection",
    "ejection_suppressed",
    "fault",
    "fault_abort",
    "fault_delay",
    "fault_end",
    "instance_down",
    "instance_up",
    "mirror",
    "mtls_handshake_failed",
    "outlier_panic",
    "retry",
    "retry_overflow",
    "root_retired",
    "root_rotation_started",
    "root_signing_switched",
    "tls_handshake",
    "unejection",
];
