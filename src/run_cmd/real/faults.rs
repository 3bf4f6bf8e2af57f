//! The scenario's faults, applied for real on the run's timeline, and the links
//! (userspace fault-injecting TCP relays) they act on.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netfault::{Direction, Faults, Latency, Link, LinkHandle, Probability, ResetScope};
use results::scenario::Event;
use scenario::{FaultKind, Scenario, Selector};

use super::plan::Plan;
use super::procs::{Procs, wait_ready};

/// Starts one relay per planned link, listening on its planned port, with the
/// scenario network's base latency.
pub async fn start_links(plan: &Plan, seed: u64) -> anyhow::Result<Vec<Link>> {
    let mut links = Vec::new();
    for (i, l) in plan.links.iter().enumerate() {
        let dest = &plan.insts[l.dest];
        let upstream = format!("127.0.0.1:{}", dest.serving_port(plan.proxies_per_hop))
            .parse()
            .expect("a valid address");
        let link = Link::builder(upstream)
            .listen_port(l.port)
            .seed(seed ^ (i as u64 + 1))
            .faults(base_faults(l))
            .bind()
            .await
            .map_err(|e| anyhow::anyhow!("link {} -> {}: {e}", l.source, dest.name))?;
        links.push(link);
    }
    Ok(links)
}

/// A link's faults before any scenario fault: the network's latency, bandwidth and
/// loss.
fn base_faults(l: &super::plan::LinkPlan) -> Faults {
    let mut f = Faults::default();
    if l.base_latency_ns > 0 {
        let lat = Latency::fixed(Duration::from_nanos(l.base_latency_ns));
        f.upstream.latency = Some(lat);
        f.downstream.latency = Some(lat);
    }
    if let Some(bytes) = l.bandwidth_bps.and_then(|bps| NonZeroU64::new(bps / 8)) {
        f.upstream.bandwidth_bytes_per_sec = Some(bytes);
        f.downstream.bandwidth_bytes_per_sec = Some(bytes);
    }
    if let Ok(p) = Probability::new(l.loss) {
        f.reset_per_chunk = p;
    }
    f
}

/// What the fault thread needs.
#[derive(Debug)]
pub struct Context {
    pub sc: Scenario,
    pub plan: Plan,
    pub procs: Arc<Mutex<Procs>>,
    pub links: Vec<LinkHandle>,
    pub events: Arc<Mutex<Vec<Event>>>,
    pub t0: Instant,
    /// Set when the run is over: no further faults.
    pub done: Arc<AtomicBool>,
    /// Set on Ctrl-C.
    pub stop: Arc<AtomicBool>,
    pub config_dir: PathBuf,
    pub scenario_dir: PathBuf,
    /// The CA, when sidecars have certificates.
    pub ca: Option<super::identity::CaPlan>,
}

/// One step of the timeline: fault `index` starts (`true`) or ends.
#[derive(Debug, Clone, Copy)]
struct Step {
    at_ns: u64,
    index: usize,
    start: bool,
}

/// Runs the fault timeline on its own thread (process control blocks).
pub fn spawn(ctx: Context) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut steps: Vec<Step> = Vec::new();
        for (index, f) in ctx.sc.faults.iter().enumerate() {
            steps.push(Step {
                at_ns: f.at_ns,
                index,
                start: true,
            });
            if let Some(d) = f.for_ns {
                steps.push(Step {
                    at_ns: f.at_ns + d,
                    index,
                    start: false,
                });
            }
        }
        steps.sort_by_key(|s| (s.at_ns, !s.start, s.index));
        for step in steps {
            let at = ctx.t0 + Duration::from_nanos(step.at_ns);
            while Instant::now() < at {
                if ctx.done.load(Ordering::SeqCst) || ctx.stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep((at - Instant::now()).min(Duration::from_millis(20)));
            }
            if ctx.done.load(Ordering::SeqCst) || ctx.stop.load(Ordering::SeqCst) {
                return;
            }
            apply(&ctx, step);
        }
    })
}

impl Context {
    fn log(&self, kind: &str, at: &str, detail: String) {
        let t_ns = u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Event {
                t_ns,
                kind: kind.to_owned(),
                at: at.to_owned(),
                detail,
            });
    }

    /// The instances a selector picks, in instance order.
    fn select(&self, sel: &Selector) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .plan
            .insts
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                i.service == sel.service
                    && sel.version.as_ref().is_none_or(|v| *v == i.version)
                    && sel.zone.as_ref().is_none_or(|z| *z == i.zone)
            })
            .map(|(k, _)| k)
            .collect();
        if let Some(n) = sel.count {
            out.truncate(n as usize);
        }
        out
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, Procs> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kill(&self, insts: &[usize], why: &str) {
        for &k in insts {
            let name = &self.plan.insts[k].name;
            let mut p = self.procs();
            p.kill(&format!("{name}.app"));
            p.kill(&format!("{name}.proxy"));
            drop(p);
            self.log("instance_down", name, why.to_owned());
        }
    }

    /// Starts the instances again. Each waits for its processes to be ready on its
    /// own thread (a sidecar restarted while the control plane is down is not ready
    /// until it returns, as in Kubernetes), so the timeline goes on meanwhile.
    fn start(&self, insts: &[usize]) {
        for &k in insts {
            let name = self.plan.insts[k].name.clone();
            let parts: &[&str] = if self.plan.proxies_per_hop == 0 {
                &["app"]
            } else {
                &["app", "proxy"]
            };
            let mut launched = Vec::new();
            let mut failed = None;
            {
                let mut p = self.procs();
                for part in parts {
                    let child = format!("{name}.{part}");
                    match p.relaunch(&child) {
                        Ok(rx) => launched.push((p.log_path(&child), child, rx)),
                        Err(e) => failed = Some(e.to_string()),
                    }
                }
            }
            if let Some(e) = failed {
                self.log("instance_down", &name, format!("restart failed: {e}"));
                continue;
            }
            let events = Arc::clone(&self.events);
            let t0 = self.t0;
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let outcome = launched
                    .iter()
                    .try_for_each(|(log, child, rx)| wait_ready(child, rx, log, deadline));
                let (kind, detail) = match outcome {
                    Ok(()) => ("instance_up", "restarted".to_owned()),
                    Err(e) => ("instance_down", format!("restart failed: {e}")),
                };
                events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Event {
                        t_ns: u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX),
                        kind: kind.to_owned(),
                        at: name,
                        detail,
                    });
            });
        }
    }

    fn links(&self, a: &str, b: &str) -> Vec<(&LinkHandle, bool)> {
        self.plan
            .links_between(a, b)
            .into_iter()
            .map(|(i, forward)| (&self.links[i], forward))
            .collect()
    }

    /// POST (apply) or DELETE (revert) app fault `index` on each instance.
    fn app_fault(&self, insts: &[usize], index: usize, apply: bool) {
        for &k in insts {
            let port = self.plan.insts[k].app_port;
            let method = if apply { "POST" } else { "DELETE" };
            if let Err(e) = http_call(port, method, &format!("/_meshrig/fault/{index}")) {
                self.log(
                    "fault",
                    &self.plan.insts[k].name,
                    format!("could not reach the app to {method} fault {index}: {e}"),
                );
            }
        }
    }
}

fn describe(kind: &FaultKind) -> String {
    match kind {
        FaultKind::Kill(s) => format!("kill {}", selector(s)),
        FaultKind::Restart(s) => format!("restart {}", selector(s)),
        FaultKind::ZoneOutage { zone } => format!("zone outage {zone}"),
        FaultKind::Partition { a, b, one_way } => {
            format!("partition {a} {} {b}", if *one_way { "->" } else { "<->" })
        }
        FaultKind::LinkLatency { a, b, .. } => format!("latency {a} <-> {b}"),
        FaultKind::LinkLoss { a, b, loss } => format!("loss {loss} {a} <-> {b}"),
        FaultKind::Hold { a, b } => format!("hold {a} <-> {b}"),
        FaultKind::CaOutage => "CA outage".to_owned(),
        FaultKind::CaRotate { .. } => "CA root rotation".to_owned(),
        FaultKind::ControlPlaneOutage => "control plane outage".to_owned(),
        FaultKind::Config(_) => "config change".to_owned(),
        FaultKind::ClockSkew { selector: s, .. } => format!("clock skew {}", selector(s)),
        FaultKind::App { selector: s, .. } => format!("app behaviour {}", selector(s)),
    }
}

fn selector(s: &Selector) -> String {
    let mut out = s.service.clone();
    if let Some(v) = &s.version {
        out.push(':');
        out.push_str(v);
    }
    if let Some(z) = &s.zone {
        out.push_str(" in ");
        out.push_str(z);
    }
    out
}

fn apply(ctx: &Context, step: Step) {
    let fault = &ctx.sc.faults[step.index];
    let what = describe(&fault.kind);
    match &fault.kind {
        FaultKind::ClockSkew { .. } => return, // in not_applied
        FaultKind::CaOutage | FaultKind::CaRotate { .. } if ctx.ca.is_none() => return,
        FaultKind::CaOutage => {
            let mut p = ctx.procs();
            if step.start {
                p.kill("ca");
            } else if let Err(e) = p.restart("ca", Duration::from_secs(20)) {
                drop(p);
                ctx.log("fault", "ca", format!("CA restart failed: {e}"));
            }
        }
        FaultKind::CaRotate { overlap_ns } => {
            let rotated = match (&ctx.ca, std::env::current_exe()) {
                (Some(ca), Ok(exe)) => ca.rotate(&exe, Duration::from_nanos(*overlap_ns)),
                (_, Err(e)) => Err(format!("cannot find the meshrig binary: {e}")),
                (None, _) => Ok(()),
            };
            if let Err(e) = rotated {
                ctx.log("fault", "ca", format!("root rotation refused: {e}"));
            }
        }
        FaultKind::Kill(sel) => {
            let insts = ctx.select(sel);
            if step.start {
                ctx.kill(&insts, "killed (SIGKILL)");
            } else {
                ctx.start(&insts);
            }
        }
        FaultKind::Restart(sel) => {
            if step.start {
                let insts = ctx.select(sel);
                ctx.kill(&insts, "restarting");
                ctx.start(&insts);
            }
        }
        FaultKind::ZoneOutage { zone } => {
            let insts: Vec<usize> = (0..ctx.plan.insts.len())
                .filter(|&k| ctx.plan.insts[k].zone == *zone)
                .collect();
            if step.start {
                ctx.kill(&insts, &format!("zone {zone} down"));
            } else {
                ctx.start(&insts);
            }
        }
        FaultKind::Partition { a, b, one_way } => {
            for (link, forward) in ctx.links(a, b) {
                if !step.start {
                    link.heal();
                } else if *one_way {
                    // a → b: a's requests when the link runs from a, else b's responses.
                    link.partition_one_way(if forward {
                        Direction::Upstream
                    } else {
                        Direction::Downstream
                    });
                } else {
                    link.partition();
                }
            }
        }
        FaultKind::LinkLatency { a, b, latency } => {
            for (link, _) in ctx.links(a, b) {
                let l = if step.start {
                    let d = sim::dist::Dist::from_scenario(latency);
                    let mean = d.mean_ns() as u64;
                    Some(match latency {
                        scenario::Dist::Fixed { ns } => Latency::fixed(Duration::from_nanos(*ns)),
                        // Uniform in [mean/2, 3·mean/2]: the same mean, some spread.
                        _ => Latency::with_jitter(
                            Duration::from_nanos(mean / 2),
                            Duration::from_nanos(mean),
                        ),
                    })
                } else {
                    base_latency(ctx, link)
                };
                for dir in Direction::BOTH {
                    link.set_latency(dir, l);
                }
            }
        }
        FaultKind::LinkLoss { a, b, loss } => {
            for (link, _) in ctx.links(a, b) {
                let p = if step.start {
                    *loss
                } else {
                    plan_of(ctx, link).map_or(0.0, |l| l.loss)
                };
                if let Ok(p) = Probability::new(p) {
                    link.set_reset_probability(ResetScope::Chunk, p);
                }
            }
        }
        FaultKind::Hold { a, b } => {
            for (link, _) in ctx.links(a, b) {
                if step.start {
                    link.hold();
                } else {
                    link.release();
                }
            }
        }
        FaultKind::ControlPlaneOutage => {
            let mut p = ctx.procs();
            if step.start {
                p.kill("control");
            } else if let Err(e) = p.restart("control", Duration::from_secs(20)) {
                drop(p);
                ctx.log(
                    "fault",
                    "control",
                    format!("control plane restart failed: {e}"),
                );
            }
        }
        FaultKind::Config(sources) => {
            let texts = super::fault_sources(sources, &ctx.scenario_dir);
            for (j, text) in texts.iter().enumerate() {
                let path = ctx
                    .config_dir
                    .join(format!("900-fault-{}-{j}.yaml", step.index));
                let written = if step.start {
                    std::fs::write(&path, text)
                } else {
                    std::fs::remove_file(&path)
                };
                if let Err(e) = written {
                    ctx.log("fault", "control", format!("{}: {e}", path.display()));
                }
            }
        }
        FaultKind::App { selector: sel, .. } => {
            let insts = ctx.select(sel);
            ctx.app_fault(&insts, step.index, step.start);
        }
    }
    let (kind, at) = if step.start {
        ("fault", "mesh")
    } else {
        ("fault_end", "mesh")
    };
    ctx.log(kind, at, what);
}

/// The plan of a running link.
fn plan_of<'a>(ctx: &'a Context, link: &LinkHandle) -> Option<&'a super::plan::LinkPlan> {
    let port = link.local_addr().port();
    ctx.plan.links.iter().find(|l| l.port == port)
}

/// The link's base latency (the scenario network's), restored after a latency fault.
fn base_latency(ctx: &Context, link: &LinkHandle) -> Option<Latency> {
    plan_of(ctx, link)
        .filter(|l| l.base_latency_ns > 0)
        .map(|l| Latency::fixed(Duration::from_nanos(l.base_latency_ns)))
}

/// A one-shot HTTP/1.1 request to 127.0.0.1:`port` with no body; the status code.
fn http_call(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status in the answer"))
}
