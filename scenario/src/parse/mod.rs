//! From YAML text to a checked [`Scenario`]: [`parse`].
//!
//! Decoding reports every problem it meets (unknown fields with the closest known
//! name, bad durations, rates, distributions, missing fields) and carries on; then
//! [`crate::validate`] checks every cross-reference (services, versions, zones) over
//! whatever decoded, so one pass reports everything.

mod dist;
mod faults;
mod spec;
mod topology;
mod values;
mod workload;
pub(crate) mod yaml;

use mesh_core::config::Finding;

use crate::assert::parse_assertion;
use crate::model::{API_VERSION, Assertion, KIND, Mesh, Network, Scenario, Topology};
use crate::validate::{self, Origins};

pub use topology::DEFAULT_REGION;
pub use workload::DEFAULT_TIMEOUT_NS;

use yaml::{At, Ctx};

/// Default `spec.seed`.
pub const DEFAULT_SEED: u64 = 1;
/// Default `spec.sim.costTable`.
pub const DEFAULT_COST_TABLE: &str = "default";

/// Parses and validates a scenario file. `file` is the display path used in
/// findings. Returns the scenario when no finding is an error, and every finding
/// (warnings included), sorted by line.
pub fn parse(file: &str, text: &str) -> (Option<Scenario>, Vec<Finding>) {
    let (scenario, findings) = parse_lenient(file, text);
    let ok = !findings.iter().any(Finding::is_error);
    (scenario.filter(|_| ok), findings)
}

/// Like [`parse`], but returns whatever decoded even when there are errors (so
/// [`crate::load`] can still check the configuration it references).
pub(crate) fn parse_lenient(file: &str, text: &str) -> (Option<Scenario>, Vec<Finding>) {
    let (scenario, origins, mut findings) = decode(file, text);
    if let Some(s) = &scenario {
        findings.extend(validate::check(s, &origins, file));
    }
    findings.sort_by_key(|f| f.line);
    findings.dedup();
    (scenario, findings)
}

/// True when `text` is a single YAML document with `kind: Scenario` (whatever its
/// other fields): how `meshrig validate` tells scenario files from Istio files.
pub fn is_scenario(text: &str) -> bool {
    let Ok(docs) = yaml::load_stream("", text) else {
        return text.lines().any(|l| l.trim() == "kind: Scenario");
    };
    docs.iter().any(|d| yaml_kind(d).as_deref() == Some(KIND))
}

fn yaml_kind(doc: &yaml::Node<'_>) -> Option<String> {
    let mut cx = Ctx::new("");
    let m = At::root(doc).map(&mut cx, &["apiVersion", "kind", "metadata", "spec"])?;
    let k = m.get(&mut cx, "kind")?;
    yaml::as_str(k.node).map(str::to_owned)
}

const SPEC_FIELDS: [&str; 9] = [
    "seed",
    "duration",
    "topology",
    "network",
    "mesh",
    "workload",
    "faults",
    "assertions",
    "sim",
];

/// Decodes without cross-reference checks. The scenario is `None` only when the
/// document is unusable (not YAML, not a mapping); otherwise missing pieces take
/// defaults so validation can still run.
fn decode(file: &str, text: &str) -> (Option<Scenario>, Origins, Vec<Finding>) {
    let mut origins = Origins::default();
    let docs = match yaml::load_stream(file, text) {
        Ok(d) => d,
        Err(f) => return (None, origins, vec![f]),
    };
    let mut cx = Ctx::new(file);
    let doc = match docs.as_slice() {
        [one] => one,
        [] => {
            cx.error_at(1, "(document)", "empty file (expected a Scenario document)");
            return (None, origins, cx.findings);
        }
        [first, ..] => {
            let line = yaml::line(&docs[1]);
            cx.error_at(line, "(document)", "a scenario file holds one document (put Istio resources in files referenced from spec.mesh.config)");
            first
        }
    };
    let root_at = At::root(doc);
    let Some(root) = root_at.map(&mut cx, &["apiVersion", "kind", "metadata", "spec"]) else {
        return (None, origins, cx.findings);
    };
    for (field, want) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        match root.get(&mut cx, field) {
            Some(f) if yaml::as_str(f.node) == Some(want) => {}
            Some(f) => {
                let found = yaml::describe(f.node);
                cx.error(&f, format!("expected {want}, found {found}"));
            }
            None => root.missing(&mut cx, field, &format!("{field}: {want}")),
        }
    }
    let (name, description) = metadata(&mut cx, &root);
    let mut scenario = Scenario {
        name,
        description,
        seed: DEFAULT_SEED,
        duration_ns: 0,
        topology: Topology {
            zones: Vec::new(),
            services: Vec::new(),
        },
        network: Network::default(),
        mesh: Mesh::default(),
        workload: Vec::new(),
        faults: Vec::new(),
        assertions: Vec::new(),
        cost_table: DEFAULT_COST_TABLE.to_owned(),
    };
    let Some(spec_at) = root.get(&mut cx, "spec") else {
        root.missing(
            &mut cx,
            "spec",
            "the scenario: duration, topology, workload, ...",
        );
        return (Some(scenario), origins, cx.findings);
    };
    let Some(spec) = spec_at.map(&mut cx, &SPEC_FIELDS) else {
        return (Some(scenario), origins, cx.findings);
    };
    if let Some(f) = spec.get(&mut cx, "seed") {
        scenario.seed = values::uint(&mut cx, &f, u64::MAX).unwrap_or(DEFAULT_SEED);
    }
    match spec.get(&mut cx, "duration") {
        Some(f) => match values::duration(&mut cx, &f) {
            Some(0) => cx.error(&f, "a duration of 0 runs nothing (e.g. 60s)"),
            Some(d) => scenario.duration_ns = d,
            None => {}
        },
        None => spec.missing(
            &mut cx,
            "duration",
            "how long the run lasts, e.g. duration: 60s",
        ),
    }
    match spec.get(&mut cx, "topology") {
        Some(f) => {
            scenario.topology = topology::topology(&mut cx, &f);
            origins.services = service_indices(&cx, &f, &scenario.topology);
        }
        None => spec.missing(&mut cx, "topology", "zones and services"),
    }
    if let Some(f) = spec.get(&mut cx, "network") {
        scenario.network = spec::network(&mut cx, &f);
    }
    if let Some(f) = spec.get(&mut cx, "mesh") {
        scenario.mesh = spec::mesh(&mut cx, &f);
    }
    let first_zone = scenario
        .topology
        .zones
        .first()
        .map(|z| z.name.clone())
        .unwrap_or_default();
    if let Some(f) = spec.get(&mut cx, "workload") {
        for (i, item) in f.items(&mut cx).into_iter().enumerate() {
            if let Some(w) = workload::workload(&mut cx, &item, &first_zone) {
                scenario.workload.push(w);
                origins.workloads.push(i);
            }
        }
    }
    if let Some(f) = spec.get(&mut cx, "faults") {
        for (i, item) in f.items(&mut cx).into_iter().enumerate() {
            if let Some(fault) = faults::fault(&mut cx, &item) {
                scenario.faults.push(fault);
                origins.faults.push(i);
            }
        }
    }
    if let Some(f) = spec.get(&mut cx, "assertions") {
        for (i, item) in f.items(&mut cx).into_iter().enumerate() {
            let Some(text) = yaml::as_str(item.node) else {
                let found = yaml::describe(item.node);
                cx.error(&item, format!("expected an assertion string such as \"p99(frontend) < 50ms\", found {found}"));
                continue;
            };
            match parse_assertion(text) {
                Ok(expr) => {
                    scenario.assertions.push(Assertion {
                        text: text.to_owned(),
                        line: item.line,
                        expr,
                    });
                    origins.assertions.push(i);
                }
                Err(e) => cx.error(&item, format!("invalid assertion {text:?}: {e}")),
            }
        }
    }
    if let Some(f) = spec.get(&mut cx, "sim")
        && let Some(m) = f.map(&mut cx, &["costTable"])
        && let Some(t) = m
            .get(&mut cx, "costTable")
            .and_then(|f| values::name(&mut cx, &f))
    {
        scenario.cost_table = t;
    }
    origins.positions = std::mem::take(&mut cx.positions);
    (Some(scenario), origins, cx.findings)
}

fn metadata(cx: &mut Ctx<'_>, root: &yaml::Map<'_>) -> (String, Option<String>) {
    let Some(m) = root
        .get(cx, "metadata")
        .and_then(|f| f.map(cx, &["name", "description"]))
    else {
        if !root.has("metadata") {
            root.missing(
                cx,
                "metadata",
                "at least a name: metadata: { name: my-scenario }",
            );
        }
        return (String::new(), None);
    };
    let name = m.get(cx, "name").and_then(|f| values::name(cx, &f));
    if !m.has("name") {
        m.missing(cx, "name", "e.g. name: outlier-failover");
    }
    let description = m
        .get(cx, "description")
        .and_then(|f| values::string(cx, &f));
    (name.unwrap_or_default(), description)
}

/// For each decoded service, the index of its entry in `spec.topology.services`
/// (entries that failed to decode are skipped in the model).
fn service_indices(cx: &Ctx<'_>, topo: &At<'_>, t: &Topology) -> Vec<usize> {
    let mut scratch = Ctx::new(cx.file);
    let Some(m) = topo.map(&mut scratch, &["zones", "services"]) else {
        return Vec::new();
    };
    let Some(services) = m.get(&mut scratch, "services") else {
        return Vec::new();
    };
    let names: Vec<Option<String>> = services.items(&mut scratch).iter().map(yaml_name).collect();
    t.services
        .iter()
        .map(|s| {
            names
                .iter()
                .position(|n| n.as_deref() == Some(s.name.as_str()))
                .unwrap_or(0)
        })
        .collect()
}

fn yaml_name(item: &At<'_>) -> Option<String> {
    let mut scratch = Ctx::new("");
    let m = item.map(&mut scratch, &["name"])?;
    let n = m.get(&mut scratch, "name")?;
    yaml::scalar_text(n.node)
}
