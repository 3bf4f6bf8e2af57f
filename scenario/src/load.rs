//! [`load`]: a scenario with the Istio configuration it references, ready to run.
//!
//! The caller reads files (this crate does no IO): `read` gets each `file:` path as
//! written in the scenario (relative to the scenario file) and returns its contents
//! or an error message. Configuration findings are passed through: files keep their
//! own `file:line`; findings inside `inline:` text point at the scenario line.

use std::path::Path;

use mesh_core::config::{ConfigSet, Finding};

use crate::model::{ConfigSource, FaultKind, Scenario};
use crate::parse;

/// A scenario and its loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub scenario: Scenario,
    /// `spec.mesh.config`, loaded as one set.
    pub config: ConfigSet,
    /// The `(display path, contents)` pairs `config` was loaded from, in order
    /// (`file:` entries are shown relative to the scenario file's directory).
    pub config_sources: Vec<(String, String)>,
    /// For each `config` fault (by index in `scenario.faults`), its set.
    pub fault_configs: Vec<(usize, ConfigSet)>,
    /// FNV-1a 64 of the scenario text followed by every referenced file, in order.
    pub hash: u64,
    /// Warnings and notes (no errors: with an error, `load` returns `Err`).
    pub findings: Vec<Finding>,
}

/// Parses `text` (the scenario file `file`), reads and loads its Istio
/// configuration through `read`, and checks the configuration against the topology.
/// Returns every finding (errors, warnings, notes; scenario first, then each
/// configuration file) when any is an error.
pub fn load(
    file: &str,
    text: &str,
    read: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Loaded, Vec<Finding>> {
    let (scenario, mut findings) = parse::parse_lenient(file, text);
    let Some(scenario) = scenario else {
        return Err(findings);
    };
    let mut hashed: Vec<u8> = text.as_bytes().to_vec();
    let mut inline = Vec::new();
    let mut found = Vec::new();
    let (config, config_sources) = load_set(
        file,
        &scenario.mesh.config,
        "spec.mesh.config",
        read,
        &mut hashed,
        &mut inline,
        &mut found,
    );
    check_against_topology(&scenario, &config, &mut found);
    let mut fault_configs = Vec::new();
    for (i, f) in scenario.faults.iter().enumerate() {
        if let FaultKind::Config(sources) = &f.kind {
            // A config change applies its resources on top of `spec.mesh.config`, as
            // `kubectl apply` does: the same kind, namespace and name replaces the
            // scenario's resource; everything else stays.
            let path = format!("spec.faults[{i}].config");
            let mut alone = Vec::new();
            let (_, pairs) = load_set(
                file,
                sources,
                &path,
                read,
                &mut hashed,
                &mut inline,
                &mut alone,
            );
            // Read errors (a missing file) are this fault's own.
            found.extend(
                alone
                    .into_iter()
                    .filter(|f| f.path == path || f.path.starts_with(&format!("{path}["))),
            );
            let combined: Vec<(String, String)> =
                config_sources.iter().cloned().chain(pairs).collect();
            let (set, combined_found) = ConfigSet::load(&combined);
            let main_files: Vec<&str> = config_sources.iter().map(|(n, _)| n.as_str()).collect();
            found.extend(combined_found.into_iter().filter(|f| {
                // The scenario's own files were reported already; a fault replacing one
                // of their resources is the point, not a problem.
                !main_files.contains(&f.file.as_str())
                    && !f
                        .message
                        .contains("is defined again, replacing the definition")
            }));
            check_against_topology(&scenario, &set, &mut found);
            fault_configs.push((i, set));
        }
    }
    for mut f in found {
        if let Some((_, path, line)) = inline.iter().find(|(n, _, _)| *n == f.file) {
            f.line = inline_line(text, *line, f.line);
            f.path = format!("{path}.{}", f.path);
            f.file = file.to_owned();
        }
        findings.push(f);
    }
    if findings.iter().any(Finding::is_error) {
        return Err(findings);
    }
    Ok(Loaded {
        scenario,
        config,
        config_sources,
        fault_configs,
        hash: mesh_core::compile::snapshot::fnv1a64(&hashed),
        findings,
    })
}

/// The display path of `path` (as written in the scenario) relative to `file`'s
/// directory.
pub fn resolve_display(file: &str, path: &str) -> String {
    match Path::new(file).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path).display().to_string(),
        _ => path.to_owned(),
    }
}

/// An inline source: its set-internal file name, its field path, its scenario line.
type InlineSource = (String, String, u32);

fn load_set(
    file: &str,
    sources: &[ConfigSource],
    field: &str,
    read: &mut dyn FnMut(&str) -> Result<String, String>,
    hashed: &mut Vec<u8>,
    inline: &mut Vec<InlineSource>,
    findings: &mut Vec<Finding>,
) -> (ConfigSet, Vec<(String, String)>) {
    let mut pairs = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        match src {
            ConfigSource::File { path, line } => match read(path) {
                Ok(contents) => {
                    hashed.extend_from_slice(contents.as_bytes());
                    pairs.push((resolve_display(file, path), contents));
                }
                Err(e) => findings.push(Finding::error(
                    file,
                    *line,
                    &format!("{field}[{i}].file"),
                    format!("cannot read {path}: {e} (paths are relative to the scenario file)"),
                )),
            },
            ConfigSource::Inline { text: body, line } => {
                let name = format!("{file}#{field}[{i}].inline");
                inline.push((name.clone(), format!("{field}[{i}].inline"), *line));
                pairs.push((name, body.clone()));
            }
        }
    }
    let (set, found) = ConfigSet::load(&pairs);
    findings.extend(found);
    (set, pairs)
}

/// The scenario line of line `inner` of an inline value whose `inline:` key is on
/// `key_line`: exact for block scalars (`inline: |`), the key's line otherwise.
fn inline_line(text: &str, key_line: u32, inner: u32) -> u32 {
    let start = text
        .lines()
        .nth(key_line.saturating_sub(1) as usize)
        .unwrap_or("");
    let after_colon = start
        .split_once("inline:")
        .map_or(start, |(_, v)| v)
        .trim_start();
    if after_colon.starts_with('|') || after_colon.starts_with('>') {
        key_line + inner
    } else {
        key_line
    }
}

/// Warnings where the Istio configuration names what the topology lacks: a
/// DestinationRule for a host no service has, a subset whose labels select no
/// version.
fn check_against_topology(s: &Scenario, set: &ConfigSet, findings: &mut Vec<Finding>) {
    for dr in set.destination_rules() {
        let host = mesh_core::config::fqdn(&dr.spec.host, &dr.metadata.namespace);
        if host.is_empty() || host.contains('*') {
            continue;
        }
        let Some(svc) = s.topology.services.iter().find(|svc| svc.fqdn() == host) else {
            let external = set.service_entries().iter().any(|se| {
                se.spec
                    .hosts
                    .iter()
                    .any(|h| *h == dr.spec.host || *h == host)
            });
            if !external {
                let names: Vec<&str> = s
                    .topology
                    .services
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                findings.push(Finding::warning(
                    &dr.origin.file,
                    dr.origin.line_of("spec.host"),
                    "spec.host",
                    format!(
                        "host {:?} is no service of the scenario's topology (services: {})",
                        dr.spec.host,
                        names.join(", ")
                    ),
                ));
            }
            continue;
        };
        for (i, subset) in dr.spec.subsets.iter().enumerate() {
            let selects = svc.versions.iter().any(|v| {
                subset
                    .labels
                    .iter()
                    .all(|(k, val)| v.labels.get(k) == Some(val))
            });
            if !selects {
                let versions: Vec<&str> = svc.versions.iter().map(|v| v.name.as_str()).collect();
                let labels: Vec<String> = subset
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let path = format!("spec.subsets[{i}].labels");
                findings.push(Finding::warning(
                    &dr.origin.file,
                    dr.origin.line_of(&path),
                    &path,
                    format!(
                        "subset `{}` ({}) selects no version of {} (versions: {}): traffic routed to it finds no instance",
                        subset.name,
                        labels.join(", "),
                        svc.name,
                        versions.join(", ")
                    ),
                ));
            }
        }
    }
}
