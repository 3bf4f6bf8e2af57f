//! `meshrig validate` — check Istio configuration files as one set, and scenario
//! files.
//!
//! The files given together (or found in the directories given) form one
//! configuration set, as `kubectl apply -f` would create it. The binary reads them;
//! [`mesh_core::config::ConfigSet::load`] does the rest (it does no IO). A file whose
//! document has `kind: Scenario` is instead checked on its own as a scenario with
//! [`scenario::load`]: its `file:` configuration references are read relative to the
//! scenario file and their findings printed with theirs. Every finding
//! is printed on stdout, one per line, as
//!
//! ```text
//! FILE:LINE: FIELD.PATH: SEVERITY: MESSAGE
//! ```
//!
//! (`SEVERITY` is `error`, `warning` or `note`), in the order the files were given,
//! then by line (scenario files after the configuration set); then one summary line: `2 errors, 1 warning in 3 files`. Exit code 0
//! when there is no error (warnings and notes allowed), 1 when there is at least one,
//! 2 for a usage problem (no such file, an unreadable file, a directory without YAML).
//!
//! Directories are searched recursively for `*.yaml` and `*.yml` files, in sorted path
//! order; entries whose name starts with `.` are skipped. Files named explicitly are
//! read whatever their extension. A file given twice (or reached twice) is read once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mesh_core::config::{ConfigSet, Finding, Tally};

use crate::exit::usage;

/// Deepest directory nesting searched.
const MAX_DEPTH: usize = 32;
/// Most files in one set.
const MAX_FILES: usize = 10_000;
/// Largest file read, in bytes.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Check Istio configuration files (VirtualService, DestinationRule, ServiceEntry,
/// Gateway, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication)
/// as one set: unknown fields, bad durations, regexes and percentages, route weights,
/// subset references, conflicting hosts. Scenario files (`kind: Scenario`) are
/// checked as scenarios, with the Istio files they reference.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each finding is printed as FILE:LINE: FIELD.PATH: SEVERITY: MESSAGE, then a summary.\n\
Directories are searched recursively for *.yaml and *.yml files (sorted; hidden entries skipped).\n\
Scenario files (kind: Scenario) are checked as scenarios, with the config files they reference.\n\
Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage error.\n\n\
Examples:\n  \
    meshrig validate samples/bookinfo.yaml samples/destination-rule-all.yaml\n  \
    meshrig validate istio/"
)]
pub struct ValidateArgs {
    /// Files and directories that together form one configuration set.
    #[arg(value_name = "FILE_OR_DIR", required = true)]
    paths: Vec<PathBuf>,
}

/// Runs `meshrig validate`.
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let sources = read_sources(&args.paths)?;
    let files = sources.len();
    let (scenarios, istio): (Vec<_>, Vec<_>) = sources
        .into_iter()
        .partition(|(_, text)| scenario::is_scenario(text));
    let (_set, istio_findings) = if istio.is_empty() {
        (ConfigSet::default(), Vec::new())
    } else {
        ConfigSet::load(&istio)
    };
    let mut findings = istio_findings;
    for (file, text) in &scenarios {
        findings.extend(check_scenario(file, text));
    }
    let mut out = String::new();
    for f in &findings {
        out.push_str(&format_finding(f));
        out.push('\n');
    }
    out.push_str(&summary(&findings, files));
    out.push('\n');
    print!("{out}");
    let code = if Tally::of(&findings).errors > 0 {
        1
    } else {
        0
    };
    Ok(ExitCode::from(code))
}

/// Every finding of the scenario file `file`: its own, then those of the Istio files
/// it references (read relative to it).
fn check_scenario(file: &str, text: &str) -> Vec<Finding> {
    let dir = Path::new(file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut read = |path: &str| -> Result<String, String> {
        let full = dir.join(path);
        match std::fs::metadata(&full) {
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                Err(format!("larger than {} MiB", MAX_FILE_BYTES / 1024 / 1024))
            }
            Ok(_) => std::fs::read_to_string(&full).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    match scenario::load(file, text, &mut read) {
        Ok(loaded) => loaded.findings,
        Err(findings) => findings,
    }
}

/// Reads the configuration files named by `paths` (directories expanded, as
/// `validate` does) into `(display path, contents)` pairs for `ConfigSet::load`.
/// Unreadable or missing paths are usage errors naming the path.
pub fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let files = collect_files(paths)?;
    let mut sources = Vec::with_capacity(files.len());
    for file in &files {
        sources.push((file.display().to_string(), read_file(file)?));
    }
    Ok(sources)
}

/// `FILE:LINE: FIELD.PATH: SEVERITY: MESSAGE`.
fn format_finding(f: &Finding) -> String {
    format!(
        "{}:{}: {}: {}: {}",
        f.file, f.line, f.path, f.severity, f.message
    )
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2 errors, 1 warning in 3 files` (notes are counted only when there are some).
fn summary(findings: &[Finding], files: usize) -> String {
    let t = Tally::of(findings);
    let mut parts = vec![
        plural(t.errors, "error", "errors"),
        plural(t.warnings, "warning", "warnings"),
    ];
    if t.notes > 0 {
        parts.push(plural(t.notes, "note", "notes"));
    }
    format!("{} in {}", parts.join(", "), plural(files, "file", "files"))
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| usage(format!("cannot read {shown}: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(usage(format!(
            "cannot read {shown}: larger than {} MiB",
            MAX_FILE_BYTES / 1024 / 1024
        )));
    }
    std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {shown}: {e}")))
}

/// The files to read, in order: explicit files as given, directories expanded.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        let found = if meta.is_dir() {
            let mut found = Vec::new();
            walk(path, 0, &mut found)?;
            if found.is_empty() {
                return Err(usage(format!(
                    "no *.yaml or *.yml files in {}",
                    path.display()
                )));
            }
            found
        } else {
            vec![path.clone()]
        };
        for file in found {
            let identity = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if seen.insert(identity) {
                files.push(file);
            }
        }
        if files.len() > MAX_FILES {
            return Err(usage(format!("more than {MAX_FILES} files to validate")));
        }
    }
    Ok(files)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Appends the YAML files under `dir` (sorted, recursive, hidden entries skipped).
fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if depth > MAX_DEPTH {
        return Err(usage(format!(
            "{} is nested more than {MAX_DEPTH} directories deep",
            dir.display()
        )));
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| usage(format!("cannot read {}: {e}", dir.display())))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| usage(format!("cannot read {}: {e}", dir.display())))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        paths.push(entry.path());
    }
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, depth + 1, out)?;
        } else if is_yaml(&path) {
            out.push(path);
        }
        if out.len() > MAX_FILES {
            return Err(usage(format!("more than {MAX_FILES} files to validate")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_pluralises() {
        let e = Finding::error("f", 1, "p", "m");
        let w = Finding::warning("f", 1, "p", "m");
        let n = Finding::note("f", 1, "p", "m");
        assert_eq!(summary(&[], 1), "0 errors, 0 warnings in 1 file");
        assert_eq!(
            summary(&[e.clone(), w.clone()], 2),
            "1 error, 1 warning in 2 files"
        );
        assert_eq!(
            summary(&[e.clone(), e, w, n], 3),
            "2 errors, 1 warning, 1 note in 3 files"
        );
    }

    #[test]
    fn findings_print_with_the_severity_after_the_field_path() {
        let f = Finding::warning("a.yaml", 3, "spec.hosts[0]", "m (r)");
        assert_eq!(
            format_finding(&f),
            "a.yaml:3: spec.hosts[0]: warning: m (r)"
        );
    }
}
