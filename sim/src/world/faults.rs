//! The fault timeline: crashes and restarts, zone outages, network faults, CA and
//! control-plane outages, CA root rotations, config changes, clock skew and app
//! behaviour changes. Each fault with `for` is undone when it elapses.

mod service_links;

use std::collections::BTreeMap;
use std::sync::Arc;

use mesh_core::config::ConfigSet;
use scenario::{FaultKind, Selector};

use super::World;
use super::build::AppModel;
use service_links::{Effect, ServiceLinks};

/// Faults in force and what undoing them needs.
#[derive(Debug)]
pub(crate) struct Faults {
    pub list: Vec<scenario::Fault>,
    pub workloads: Vec<scenario::Workload>,
    /// Config sets of `config` faults, by fault index.
    sets: BTreeMap<usize, Arc<ConfigSet>>,
    /// Nodes a fault took down, by fault index (restarted when it ends).
    downed: BTreeMap<usize, Vec<u32>>,
    /// The config set in force when a `config` fault began, by fault index.
    saved_sets: BTreeMap<usize, Arc<ConfigSet>>,
    /// Clocks before a `clockSkew` fault, by fault index: (node, offset, drift).
    saved_clocks: BTreeMap<usize, Vec<(u32, i64, f64)>>,
    /// App behaviour replaced by a fault, by fault index.
    saved_apps: BTreeMap<usize, Vec<(u32, AppModel)>>,
    zones_down: Vec<bool>,
    zone_index: BTreeMap<String, u32>,
    /// Network faults between two services in force.
    links: ServiceLinks,
    pub interrupted: bool,
    pub not_applied: Vec<String>,
    pub warnings: Vec<String>,
}

impl Faults {
    pub fn new(sc: &scenario::Scenario, loaded: &scenario::Loaded) -> Self {
        Faults {
            list: sc.faults.clone(),
            workloads: sc.workload.clone(),
            sets: loaded
                .fault_configs
                .iter()
                .map(|(i, set)| (*i, Arc::new(set.clone())))
                .collect(),
            downed: BTreeMap::new(),
            saved_apps: BTreeMap::new(),
            saved_sets: BTreeMap::new(),
            saved_clocks: BTreeMap::new(),
            zones_down: vec![false; sc.topology.zones.len()],
            zone_index: sc
                .topology
                .zones
                .iter()
                .enumerate()
                .map(|(i, z)| (z.name.clone(), i as u32))
                .collect(),
            links: ServiceLinks::default(),
            interrupted: false,
            not_applied: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records, once, something the simulator does not model.
    pub fn note_not_applied(&mut self, message: String) {
        if !self.not_applied.contains(&message) {
            self.not_applied.push(message);
        }
    }

    pub fn zone_down(&self, zone: usize) -> bool {
        self.zones_down.get(zone).copied().unwrap_or(false)
    }

    fn zones(&self, a: &str, b: &str) -> Option<(u32, u32)> {
        Some((*self.zone_index.get(a)?, *self.zone_index.get(b)?))
    }
}

impl World {
    /// Instances matching a selector, in node order (`count` of them when given).
    fn select(&self, sel: &Selector, only_up: bool) -> Vec<u32> {
        let mut out: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| {
                let n = &self.nodes[i as usize];
                let Some((s, v)) = n.instance else {
                    return false;
                };
                self.topo.service_names[s] == sel.service
                    && sel.version.as_ref().is_none_or(|want| {
                        self.topo.version_names[s][v].ends_with(&format!(":{want}"))
                    })
                    && sel
                        .zone
                        .as_ref()
                        .is_none_or(|z| self.topo.zone_names[n.zone] == *z)
                    && (!only_up || n.up)
            })
            .collect();
        if let Some(count) = sel.count {
            out.truncate(count as usize);
        }
        out
    }

    /// The instance crashes: its state (queues, sidecar, certificate, connections) is
    /// lost. Callers learn by resets and failed connections.
    fn crash(&mut self, node: u32) {
        let now = self.now();
        let n = &mut self.nodes[node as usize];
        if !n.up {
            return;
        }
        n.up = false;
        n.epoch += 1;
        n.cpu.reset(now);
        n.sidecar = super::control::Sidecar::default();
        let name = n.name.clone();
        self.net.set_node_down(node, true);
        self.drop_requests_of(node);
        self.log("instance_down", &name, "crashed");
    }

    /// The instance starts fresh: config from the control plane (if it is up), a
    /// certificate from the CA (if it is up).
    fn boot(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        if n.up {
            return;
        }
        n.up = true;
        n.epoch += 1;
        let name = n.name.clone();
        self.net.set_node_down(node, false);
        if self.control.up {
            self.install_initial_config(node);
        }
        self.request_identity(node);
        self.log("instance_up", &name, "started");
    }

    pub(super) fn on_fault(&mut self, i: u32, start: bool) {
        let i = i as usize;
        let fault = self.faults.list[i].clone();
        let what = format!("line {}: {:?}", fault.line, fault.kind);
        self.log(if start { "fault" } else { "fault_end" }, "mesh", what);
        match (&fault.kind, start) {
            (FaultKind::Kill(sel), true) => {
                let nodes = self.select(sel, true);
                for &n in &nodes {
                    self.crash(n);
                }
                self.faults.downed.insert(i, nodes);
                self.new_version(None, "instances down");
            }
            (FaultKind::Kill(_), false) => {
                for n in self.faults.downed.remove(&i).unwrap_or_default() {
                    self.boot(n);
                }
                self.new_version(None, "instances back");
            }
            (FaultKind::Restart(sel), true) => {
                for n in self.select(sel, false) {
                    self.crash(n);
                    self.boot(n);
                }
                self.new_version(None, "instances restarted");
            }
            (FaultKind::Restart(_), false) => {}
            (FaultKind::ZoneOutage { zone }, up) => {
                let Some(&z) = self.faults.zone_index.get(zone) else {
                    return;
                };
                self.faults.zones_down[z as usize] = up;
                if up {
                    let nodes: Vec<u32> = (0..self.nodes.len() as u32)
                        .filter(|&n| {
                            self.nodes[n as usize].zone == z as usize && self.nodes[n as usize].up
                        })
                        .filter(|&n| self.nodes[n as usize].instance.is_some())
                        .collect();
                    for &n in &nodes {
                        self.crash(n);
                    }
                    self.faults.downed.insert(i, nodes);
                    self.new_version(None, "zone down");
                } else {
                    for n in self.faults.downed.remove(&i).unwrap_or_default() {
                        self.boot(n);
                    }
                    self.new_version(None, "zone back");
                }
            }
            (FaultKind::Partition { a, b, one_way }, start) => match self.faults.zones(a, b) {
                Some((za, zb)) if start => self.net.partition(za, zb, *one_way),
                Some((za, zb)) => self.net.heal(za, zb),
                None => {
                    let one_way = *one_way;
                    self.between_services(i, a, b, start.then_some(Effect::Partition { one_way }));
                }
            },
            (FaultKind::LinkLatency { a, b, latency }, start) => match self.faults.zones(a, b) {
                Some((za, zb)) => {
                    let d = start.then(|| super::build::dist(latency));
                    self.net.set_link_latency(za, zb, d);
                }
                None => {
                    let effect = start.then(|| Effect::Latency(super::build::dist(latency)));
                    self.between_services(i, a, b, effect);
                }
            },
            (FaultKind::LinkLoss { a, b, loss }, start) => {
                if start && !(0.0..=1.0).contains(loss) {
                    let e = crate::net::NetError::BadLoss(*loss);
                    self.faults
                        .warnings
                        .push(format!("fault at line {}: {e}", fault.line));
                    return;
                }
                match self.faults.zones(a, b) {
                    Some((za, zb)) => {
                        // Checked above: the loss is a probability.
                        let _ = self.net.set_link_loss(za, zb, start.then_some(*loss));
                    }
                    None => self.between_services(i, a, b, start.then_some(Effect::Loss(*loss))),
                }
            }
            (FaultKind::Hold { a, b }, start) => {
                match self.faults.zones(a, b) {
                    Some((za, zb)) if start => self.net.hold(za, zb),
                    Some((za, zb)) => self.net.release(za, zb),
                    None => self.between_services(i, a, b, start.then_some(Effect::Hold)),
                }
                if !start {
                    self.release_held();
                }
            }
            (FaultKind::CaOutage, up) => self.ca.up = !up,
            (FaultKind::CaRotate { overlap_ns }, true) => self.start_rotation(i, *overlap_ns),
            // A rotation has no `for`: it ends by itself (`Ev::RootTimer`).
            (FaultKind::CaRotate { .. }, false) => {}
            (FaultKind::ControlPlaneOutage, down) => {
                self.control.up = !down;
                if !down && self.control.push_pending {
                    self.push_latest();
                }
            }
            (FaultKind::Config(_), true) => {
                let before = self.control.latest().set.clone();
                self.faults.saved_sets.insert(i, before);
                let set = self.faults.sets.get(&i).cloned();
                self.new_version(set, &format!("config change (line {})", fault.line));
            }
            (FaultKind::Config(_), false) => {
                // Back to the configuration in force when the change was made.
                let before = self.faults.saved_sets.remove(&i);
                self.new_version(before, "config change undone");
            }
            (
                FaultKind::ClockSkew {
                    selector,
                    offset_ns,
                    drift_ppm,
                },
                start,
            ) => {
                let nodes = self.select(selector, false);
                if start {
                    let saved = nodes
                        .iter()
                        .map(|&n| {
                            let node = &self.nodes[n as usize];
                            (n, node.clock_offset_ns, node.drift_ppm)
                        })
                        .collect();
                    self.faults.saved_clocks.insert(i, saved);
                }
                let restore: BTreeMap<u32, (i64, f64)> = if start {
                    BTreeMap::new()
                } else {
                    self.faults
                        .saved_clocks
                        .remove(&i)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(n, o, d)| (n, (o, d)))
                        .collect()
                };
                for n in nodes {
                    let node = &mut self.nodes[n as usize];
                    (node.clock_offset_ns, node.drift_ppm) = if start {
                        (*offset_ns, *drift_ppm)
                    } else {
                        // The clock as it was before this fault.
                        restore.get(&n).copied().unwrap_or((0, 0.0))
                    };
                    self.schedule_cert_timer(n);
                }
            }
            (
                FaultKind::App {
                    selector,
                    error_rate,
                    service_time,
                },
                true,
            ) => {
                let mut saved = Vec::new();
                for n in self.select(selector, false) {
                    let node = &mut self.nodes[n as usize];
                    saved.push((n, node.app.clone()));
                    if let Some(e) = error_rate {
                        node.app.error_rate = *e;
                    }
                    if let Some(d) = service_time {
                        node.app.service_time = super::build::dist(d);
                    }
                }
                self.faults.saved_apps.insert(i, saved);
            }
            (FaultKind::App { .. }, false) => {
                for (n, app) in self.faults.saved_apps.remove(&i).unwrap_or_default() {
                    self.nodes[n as usize].app = app;
                }
            }
        }
    }

    /// Starts (`Some`) or undoes (`None`) fault `i` between services `a` and `b`.
    fn between_services(&mut self, i: usize, a: &str, b: &str, effect: Option<Effect>) {
        let index = |name: &str| self.topo.service_names.iter().position(|s| s == name);
        let (Some(sa), Some(sb)) = (index(a), index(b)) else {
            // Validation refuses names that are neither two zones nor two services.
            let line = self.faults.list[i].line;
            self.faults.note_not_applied(format!(
                "fault at line {line}: `{a}` and `{b}` are not two zones or two services: not applied"
            ));
            return;
        };
        match effect {
            Some(effect) => {
                // Its end is known now: `FaultEnd` is scheduled only before the end of
                // the run (connection attempts caught by it need the time).
                let f = &self.faults.list[i];
                let until = f
                    .for_ns
                    .map(|d| f.at_ns.saturating_add(d))
                    .filter(|&end| end < self.end_ns)
                    .map(mesh_core::Time);
                self.faults.links.start(i, sa, sb, effect, until);
            }
            None => self.faults.links.end(i),
        }
    }
}
