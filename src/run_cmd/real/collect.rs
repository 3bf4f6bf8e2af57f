//! Turning what a real run observed into the scenario result — the same schema, built
//! by the same recorder ([`results::recorder::RunRecorder`]) as the simulator's.
//!
//! Sources: the load generator's per-request observer (the `client` target, each
//! workload, and the `client->service` edge and service), and each application's
//! JSON-lines log: requests it served (the `service:version` targets and the
//! per-instance counts) and calls it made (the `caller->callee` edges and the callee
//! service, seen from the caller, as the simulator sees them).

use std::collections::BTreeMap;
use std::path::Path;

use results::recorder::{Outcome, RunRecorder};
use results::scenario::{Event, InstanceStats};
use scenario::Scenario;

use super::plan::Plan;

/// One finished request, on the run's timeline (ns since the run started).
#[derive(Debug, Clone)]
pub struct Rec {
    pub start_ns: u64,
    pub at_ns: u64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub attempts: u32,
    pub what: What,
}

/// Whose request it was.
#[derive(Debug, Clone)]
pub enum What {
    /// Workload `w` sent it to `target`.
    Client { w: usize, target: String },
    /// Instance `inst` served it.
    Serve { inst: usize },
    /// Instance `inst` called `callee`.
    Call { inst: usize, callee: String },
}

/// Reads instance `inst`'s application log; times are Unix ns, made relative to
/// `t0_unix_ns`. Lines that do not parse are counted, not fatal.
pub fn read_app_log(path: &Path, inst: usize, t0_unix_ns: u64, out: &mut Vec<Rec>) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    let mut bad = 0;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            bad += 1;
            continue;
        };
        let start = v["start_ns"].as_u64().unwrap_or(0);
        let dur = v["dur_ns"].as_u64().unwrap_or(0);
        let start_ns = start.saturating_sub(t0_unix_ns);
        let status = v["status"].as_u64().and_then(|s| u16::try_from(s).ok());
        let error = v["error"].as_str().map(str::to_owned);
        let attempts = v["attempts"].as_u64().map_or(1, |a| a.max(1) as u32);
        let what = match v["k"].as_str() {
            Some("serve") => What::Serve { inst },
            Some("call") => What::Call {
                inst,
                callee: v["callee"].as_str().unwrap_or("").to_owned(),
            },
            _ => {
                bad += 1;
                continue;
            }
        };
        if start < t0_unix_ns {
            continue; // readiness probes before the run started
        }
        out.push(Rec {
            start_ns,
            at_ns: start_ns + dur,
            status,
            error,
            attempts,
            what,
        });
    }
    bad
}

/// What the sidecars' logs say of one instance.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Times another sidecar ejected it.
    pub ejections: u64,
    /// Certificates its sidecar was issued.
    pub certs_issued: u64,
    /// Times its sidecar's certificate expired before a renewal.
    pub cert_expiries: u64,
}

/// The recorder's output plus per-instance counts.
#[derive(Debug)]
pub struct Collected {
    pub finished: results::recorder::Finished,
    pub instances: Vec<InstanceStats>,
}

/// Feeds every record, in completion order, to a recorder declared as the
/// simulator declares its targets.
pub fn collect(
    sc: &Scenario,
    plan: &Plan,
    mut recs: Vec<Rec>,
    events: Vec<Event>,
    duration_ns: u64,
    counts: &BTreeMap<String, Counts>,
) -> Collected {
    let windows = scenario::windows_needed(&sc.assertions);
    let mut m = RunRecorder::new(windows, 1_000);
    let client = m.declare("client", true);
    let services: BTreeMap<&str, usize> = sc
        .topology
        .services
        .iter()
        .map(|s| (s.name.as_str(), m.declare(&s.name, true)))
        .collect();
    let mut versions = BTreeMap::new();
    for s in &sc.topology.services {
        for v in &s.versions {
            let name = format!("{}:{}", s.name, v.name);
            versions.insert(name.clone(), m.declare(&name, false));
        }
    }
    let workloads: Vec<usize> = (0..sc.workload.len())
        .map(|i| m.declare(&sim::workload_target_name(i), false))
        .collect();
    let mut edges: BTreeMap<String, usize> = BTreeMap::new();
    for w in &sc.workload {
        let e = format!("client->{}", w.target);
        let id = m.declare(&e, false);
        edges.insert(e, id);
    }
    for s in &sc.topology.services {
        for v in &s.versions {
            for c in &v.app.calls {
                let e = format!("{}->{}", s.name, c.service);
                let id = m.declare(&e, false);
                edges.insert(e, id);
            }
        }
    }

    let mut served = vec![(0u64, 0u64); plan.insts.len()];
    recs.sort_by_key(|r| (r.at_ns, r.start_ns));
    for r in &recs {
        let o = Outcome {
            at_ns: r.at_ns,
            start_ns: r.start_ns,
            latency_ns: r.at_ns - r.start_ns,
            status: r.status,
            error: r.error.as_deref(),
            attempts: r.attempts,
        };
        let mut targets: Vec<usize> = Vec::with_capacity(4);
        match &r.what {
            What::Client { w, target } => {
                targets.push(client);
                targets.push(workloads[*w]);
                targets.extend(services.get(target.as_str()).copied());
                targets.extend(edges.get(&format!("client->{target}")).copied());
            }
            What::Serve { inst } => {
                let i = &plan.insts[*inst];
                served[*inst].0 += 1;
                if r.status.is_none_or(|s| s >= 500) {
                    served[*inst].1 += 1;
                }
                targets.extend(
                    versions
                        .get(&format!("{}:{}", i.service, i.version))
                        .copied(),
                );
            }
            What::Call { inst, callee } => {
                let i = &plan.insts[*inst];
                targets.extend(services.get(callee.as_str()).copied());
                targets.extend(edges.get(&format!("{}->{callee}", i.service)).copied());
            }
        }
        for t in targets {
            m.started(t);
            m.finished(t, o);
        }
    }
    let mut events = events;
    events.sort_by_key(|e| e.t_ns);
    for e in events {
        m.event(e.t_ns, &e.kind, &e.at, e.detail);
    }
    let instances = plan
        .insts
        .iter()
        .zip(&served)
        .map(|(i, (n, errors))| {
            let c = counts.get(&i.name).copied().unwrap_or_default();
            InstanceStats {
                name: i.name.clone(),
                service: i.service.clone(),
                version: i.version.clone(),
                zone: i.zone.clone(),
                requests_served: *n,
                errors_served: *errors,
                ejections: c.ejections,
                cpu_utilization: 0.0,
                certs_issued: c.certs_issued,
                cert_expiries: c.cert_expiries,
            }
        })
        .collect();
    Collected {
        finished: m.finish(duration_ns),
        instances,
    }
}
