//! What a scenario run measured: per-target counters and histograms, per-second
//! series, assertion windows and the event log, turned into the parts of a
//! [`ScenarioResult`](crate::scenario::ScenarioResult) at the end.
//!
//! Both drivers fill one in — the simulator from its events, the real-mode runner from
//! the load generator and the sidecars' access logs — so their results are built the
//! same way and compare row by row.
//!
//! Targets are named as assertions name them: `client` (the load generators),
//! a service, `service:version`, `caller->callee`.

use std::collections::BTreeMap;

use crate::scenario::{
    Event, InstanceStats, ScenarioInfo, ScenarioProvenance, ScenarioResult, SimStats,
    TrafficCounts, TrafficStats, WindowStats, WorkloadStats,
};
use crate::{Recorder, SecondSample};

const SECOND_NS: u64 = 1_000_000_000;

/// Counters and a histogram for one target, with its current second.
#[derive(Debug)]
pub struct Target {
    pub counts: TrafficCounts,
    pub latency: Recorder,
    /// Keep a per-second series (client and services only: edges and versions would
    /// multiply the result's size for little use).
    series: Option<Series>,
}

#[derive(Debug)]
struct Series {
    second: u64,
    responses: u64,
    errors: u64,
    latency: Recorder,
    samples: Vec<SecondSample>,
}

impl Series {
    fn roll_to(&mut self, second: u64) {
        while self.second < second {
            self.samples.push(SecondSample {
                t_s: self.second,
                rps: self.responses as f64,
                responses: self.responses,
                errors: self.errors,
                p50_us: self.latency.value_at_percentile(50.0),
                p99_us: self.latency.value_at_percentile(99.0),
            });
            self.second += 1;
            self.responses = 0;
            self.errors = 0;
            self.latency.reset();
        }
    }
}

impl Target {
    fn new(series: bool) -> Self {
        Target {
            counts: TrafficCounts::default(),
            latency: Recorder::latency(),
            series: series.then(|| Series {
                second: 0,
                responses: 0,
                errors: 0,
                latency: Recorder::latency(),
                samples: Vec::new(),
            }),
        }
    }
}

/// One finished request or attempt, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// When it completed.
    pub at_ns: u64,
    /// When it was sent.
    pub start_ns: u64,
    pub latency_ns: u64,
    /// Final status, or `None` with `error` set.
    pub status: Option<u16>,
    pub error: Option<&'a str>,
    /// Tries it took (1 for an attempt record).
    pub attempts: u32,
}

/// A window an assertion asked for.
#[derive(Debug)]
struct Window {
    target: String,
    /// The ids of the targets it covers: one, or for `service:*` every version of
    /// the service.
    ids: Vec<usize>,
    from_ns: u64,
    to_ns: u64,
    counts: TrafficCounts,
    latency: Recorder,
}

/// Every measurement of the run.
#[derive(Debug)]
pub struct RunRecorder {
    targets: Vec<Target>,
    ids: BTreeMap<String, usize>,
    windows: Vec<Window>,
    /// Event log, capped per kind.
    events: Vec<Event>,
    events_total: BTreeMap<String, u64>,
    events_dropped: u64,
    events_unlogged: BTreeMap<String, u64>,
    cap_per_kind: u64,
}

impl RunRecorder {
    pub fn new(windows: Vec<(String, u64, u64)>, cap_per_kind: u64) -> Self {
        RunRecorder {
            targets: Vec::new(),
            ids: BTreeMap::new(),
            windows: windows
                .into_iter()
                .map(|(target, from_ns, to_ns)| Window {
                    target,
                    ids: Vec::new(),
                    from_ns,
                    to_ns,
                    counts: TrafficCounts::default(),
                    latency: Recorder::latency(),
                })
                .collect(),
            events: Vec::new(),
            events_total: BTreeMap::new(),
            events_dropped: 0,
            events_unlogged: BTreeMap::new(),
            cap_per_kind,
        }
    }

    /// The id of target `name`, declared (with a per-second series when `series`) on
    /// first use. Declared targets appear in the result even with no traffic.
    pub fn declare(&mut self, name: &str, series: bool) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.targets.len();
        self.targets.push(Target::new(series));
        self.ids.insert(name.to_owned(), id);
        for w in &mut self.windows {
            let all_versions = w
                .target
                .strip_suffix(":*")
                .is_some_and(|svc| name.strip_prefix(svc).is_some_and(|v| v.starts_with(':')));
            if w.target == name || all_versions {
                w.ids.push(id);
            }
        }
        id
    }

    /// Counts a request start on target `id`.
    pub fn started(&mut self, id: usize) {
        self.targets[id].counts.requests_total += 1;
    }

    /// Records a finished request (or attempt) on target `id`.
    pub fn finished(&mut self, id: usize, o: Outcome<'_>) {
        let latency_us = o.latency_ns / 1_000;
        let failed = o.status.is_none_or(|s| s >= 400);
        let t = &mut self.targets[id];
        record(&mut t.counts, &mut t.latency, o, latency_us);
        if let Some(series) = &mut t.series {
            series.roll_to(o.at_ns / SECOND_NS);
            series.responses += 1;
            series.errors += u64::from(failed);
            series.latency.record(latency_us);
        }
        for w in &mut self.windows {
            // A window holds the requests *sent* in it, however long they take.
            if w.ids.contains(&id) && (w.from_ns..w.to_ns).contains(&o.start_ns) {
                w.counts.requests_total += 1;
                record(&mut w.counts, &mut w.latency, o, latency_us);
            }
        }
    }

    /// Logs an event at `t_ns`.
    pub fn event(&mut self, t_ns: u64, kind: &str, at: &str, detail: impl Into<String>) {
        let n = self.events_total.entry(kind.to_owned()).or_default();
        *n += 1;
        if *n > self.cap_per_kind {
            self.events_dropped += 1;
            *self.events_unlogged.entry(kind.to_owned()).or_default() += 1;
            return;
        }
        self.events.push(Event {
            t_ns,
            kind: kind.to_owned(),
            at: at.to_owned(),
            detail: detail.into(),
        });
    }

    /// Counts an event of `kind` without logging it.
    pub fn count_event(&mut self, kind: &str) {
        *self.events_total.entry(kind.to_owned()).or_default() += 1;
        self.events_dropped += 1;
        *self.events_unlogged.entry(kind.to_owned()).or_default() += 1;
    }

    /// Everything, for the result.
    pub fn finish(mut self, duration_ns: u64) -> Finished {
        let end_second = duration_ns.div_ceil(SECOND_NS);
        let mut timeseries = BTreeMap::new();
        let mut stats = BTreeMap::new();
        for (name, &id) in &self.ids {
            let t = &mut self.targets[id];
            if let Some(series) = &mut t.series {
                // Requests that finished while the run drained count too.
                let last = series.second + u64::from(series.responses > 0);
                series.roll_to(end_second.max(last));
                timeseries.insert(name.clone(), std::mem::take(&mut series.samples));
            }
            stats.insert(
                name.clone(),
                TrafficStats::from_counts(&t.counts, &t.latency, duration_ns),
            );
        }
        let windows = self
            .windows
            .iter()
            .map(|w| WindowStats {
                target: w.target.clone(),
                from_ns: w.from_ns,
                to_ns: w.to_ns,
                stats: TrafficStats::from_counts(
                    &w.counts,
                    &w.latency,
                    w.to_ns.min(duration_ns).saturating_sub(w.from_ns),
                ),
            })
            .collect();
        // Events are logged in time order already (the engine pops in time order).
        Finished {
            stats,
            windows,
            timeseries,
            events: self.events,
            events_total: self.events_total,
            events_dropped: self.events_dropped,
            events_unlogged: self.events_unlogged,
        }
    }
}

fn record(counts: &mut TrafficCounts, latency: &mut Recorder, o: Outcome<'_>, latency_us: u64) {
    counts.attempts_total += u64::from(o.attempts);
    counts.retries_total += u64::from(o.attempts.saturating_sub(1));
    counts.complete(o.status, o.error);
    latency.record(latency_us);
}

/// The measurements, ready for the result.
#[derive(Debug)]
pub struct Finished {
    pub stats: BTreeMap<String, TrafficStats>,
    pub windows: Vec<WindowStats>,
    pub timeseries: BTreeMap<String, Vec<SecondSample>>,
    pub events: Vec<Event>,
    pub events_total: BTreeMap<String, u64>,
    pub events_dropped: u64,
    pub events_unlogged: BTreeMap<String, u64>,
}

/// The recorder's name of workload `i` (`#w<i>`; `#` keeps it out of `services`).
pub fn workload_target(i: usize) -> String {
    format!("#w{i}")
}

/// What a driver knows about its run besides the measurements.
#[derive(Debug)]
pub struct RunInfo {
    pub scenario: ScenarioInfo,
    pub interrupted: bool,
    pub duration_ns: u64,
    /// Per workload, in order: its target service and requested mean rate.
    pub workloads: Vec<(String, Option<f64>)>,
    pub instances: Vec<InstanceStats>,
    pub not_applied: Vec<String>,
    pub warnings: Vec<String>,
    pub sim: Option<SimStats>,
    pub provenance: ScenarioProvenance,
}

impl Finished {
    /// The scenario result (assertions not evaluated yet): `client` becomes the totals,
    /// [`workload_target`]s the workloads, and the other targets services, versions
    /// (`svc:ver`) and edges (`a->b`) by their names — the same for both drivers.
    pub fn into_result(self, info: RunInfo) -> ScenarioResult {
        let mut stats = self.stats;
        let duration_ns = info.duration_ns;
        let mut take = |name: &str| {
            stats.remove(name).unwrap_or_else(|| {
                TrafficStats::from_counts(
                    &TrafficCounts::default(),
                    &Recorder::latency(),
                    duration_ns,
                )
            })
        };
        let totals = take("client");
        let workloads = info
            .workloads
            .into_iter()
            .enumerate()
            .map(|(i, (target, rps_target))| WorkloadStats {
                target,
                rps_target,
                stats: take(&workload_target(i)),
            })
            .collect();
        let (mut services, mut versions, mut edges) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (name, s) in stats {
            if name.contains("->") {
                edges.insert(name, s);
            } else if name.contains(':') {
                versions.insert(name, s);
            } else if !name.starts_with('#') {
                services.insert(name, s);
            }
        }
        ScenarioResult {
            schema: crate::SCHEMA.to_owned(),
            kind: crate::scenario::SCENARIO_KIND.to_owned(),
            scenario: info.scenario,
            interrupted: info.interrupted,
            duration_ns,
            totals,
            workloads,
            services,
            versions,
            edges,
            windows: self.windows,
            timeseries: self.timeseries,
            events_total: self.events_total,
            events: self.events,
            events_dropped: self.events_dropped,
            events_unlogged: self.events_unlogged,
            instances: info.instances,
            assertions: Vec::new(),
            not_applied: info.not_applied,
            warnings: info.warnings,
            sim: info.sim,
            provenance: info.provenance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(at_ns: u64, latency_ns: u64) -> Outcome<'static> {
        Outcome {
            at_ns,
            start_ns: at_ns.saturating_sub(latency_ns),
            latency_ns,
            status: Some(200),
            error: None,
            attempts: 1,
        }
    }

    #[test]
    fn series_has_a_row_per_second_including_idle_ones() {
        let mut m = RunRecorder::new(vec![], 10);
        let c = m.declare("client", true);
        m.started(c);
        m.finished(c, ok(100, 1_000_000));
        m.started(c);
        m.finished(c, ok(2_500_000_000, 3_000_000));
        let f = m.finish(3_000_000_000);
        let rows = &f.timeseries["client"];
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows.iter().map(|r| r.responses).collect::<Vec<_>>(),
            [1, 0, 1]
        );
        assert_eq!(f.stats["client"].requests_total, 2);
    }

    #[test]
    fn windows_take_the_requests_sent_inside_them() {
        let mut m = RunRecorder::new(vec![("a".into(), 1_000_000, 2_000_000)], 10);
        let a = m.declare("a", false);
        // Sent before, inside (finishing long after the window), and at its end.
        m.finished(a, ok(900_000, 10_000));
        m.finished(a, ok(2_500_000, 1_000_000));
        m.finished(a, ok(2_100_000, 100_000));
        let f = m.finish(10_000_000);
        assert_eq!(f.windows[0].stats.requests_total, 1);
        assert_eq!(f.windows[0].stats.latency_us.max, 1_000);
    }

    #[test]
    fn event_log_is_capped_per_kind_but_counted_exactly() {
        let mut m = RunRecorder::new(vec![], 2);
        for t in 0..5 {
            m.event(t, "retry", "x", "again");
        }
        m.event(9, "ejection", "x", "out");
        let f = m.finish(10);
        assert_eq!(f.events_total["retry"], 5);
        assert_eq!(f.events.len(), 3);
        assert_eq!(f.events_dropped, 3);
    }
}
