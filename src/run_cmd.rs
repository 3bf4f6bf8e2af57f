//! `meshrig run SCENARIO` — run a scenario file and check its assertions.
//!
//! The binary reads the scenario (and, through a callback, the Istio files it
//! references); [`scenario::load`] parses and validates it; [`sim::run`] runs it in
//! the deterministic simulator. The result goes to `--out DIR` (`result.json`,
//! `events.jsonl`), to stdout as a summary (or as JSON with `--json`), and the
//! assertions decide the exit code: 0 all hold, 1 one failed, 2 the scenario or a flag
//! is invalid, 130 interrupted (Ctrl-C / SIGTERM, after writing the partial result).
//!
//! Real mode (`--mode real`, [`real`]) runs the same scenario on real processes and
//! sockets and writes the same result schema.

mod output;
mod real;
mod render;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use mesh_core::config::Finding;
use results::scenario::ScenarioResult;
use results::units::{format_duration, parse_duration};
use sim::cost::CostTable;

use crate::exit::usage;

/// Exit code after Ctrl-C / SIGTERM (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// Run a scenario file: build the mesh it describes, send its workload, inject its
/// faults, and check its assertions (exit 0 all hold, 1 one failed, 2 invalid scenario
/// or usage, 130 interrupted).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every assertion holds, 1 an assertion failed (or \
--check-determinism found a difference), 2 invalid scenario or usage error, 130 interrupted \
(the partial result is still written).\n\n\
Examples:\n  \
    meshrig run scenarios/outlier-failover.yaml\n  \
    meshrig run scenario.yaml --seed 7 --out results/run1\n  \
    meshrig run scenario.yaml --duration 10s --check-determinism --quiet"
)]
pub struct RunArgs {
    /// The scenario file (YAML, `kind: Scenario`).
    #[arg(value_name = "SCENARIO")]
    pub scenario: PathBuf,

    /// Where to run it: `sim` (the deterministic simulator) or `real` (real processes
    /// on 127.0.0.1: control plane, an app and a sidecar per instance).
    #[arg(long, value_enum, default_value_t = Mode::Sim)]
    pub mode: Mode,

    /// Seed of every random draw (default: the scenario's `spec.seed`, else 1). Same
    /// scenario + seed + binary = byte-identical result.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Write `result.json` and `events.jsonl` into DIR (created if missing; files
    /// there are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Stop the timeline at D (e.g. 10s) instead of the scenario's `spec.duration`:
    /// the workload, faults and assertions see only the first D. Must be above 0.
    #[arg(long, value_name = "D", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// Run the scenario twice and compare the two results byte for byte; a difference
    /// exits 1 and shows the first differing line.
    #[arg(long)]
    pub check_determinism: bool,

    /// The simulator's CPU cost table: `default` (built in) or a YAML file (default:
    /// the scenario's `spec.sim.costTable`, else `default`).
    #[arg(long, value_name = "NAME|FILE")]
    pub cost_table: Option<String>,

    /// No progress and no summary (errors, warnings and failed assertions still go to
    /// stderr).
    #[arg(long)]
    pub quiet: bool,

    /// Print the result (JSON, the meshrig result schema) on stdout instead of the
    /// summary.
    #[arg(long)]
    pub json: bool,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The deterministic discrete-event simulator.
    Sim,
    /// Real processes on real sockets (127.0.0.1).
    Real,
}

/// Runs `meshrig run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let file = args.scenario.display().to_string();
    let text = std::fs::read_to_string(&args.scenario)
        .map_err(|e| usage(format!("cannot read scenario {file}: {e}")))?;
    let dir = args
        .scenario
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut read = |rel: &str| -> Result<String, String> {
        std::fs::read_to_string(dir.join(rel)).map_err(|e| e.to_string())
    };
    let loaded = match scenario::load(&file, &text, &mut read) {
        Ok(loaded) => loaded,
        Err(findings) => {
            for f in &findings {
                eprintln!("{}", format_finding(f));
            }
            let errors = findings.iter().filter(|f| f.is_error()).count();
            eprintln!(
                "meshrig run: {file} is invalid ({}); nothing ran",
                plural(errors, "error", "errors")
            );
            return Ok(ExitCode::from(2));
        }
    };
    for f in &loaded.findings {
        if !args.quiet || f.severity != mesh_core::config::Severity::Note {
            eprintln!("{}", format_finding(f));
        }
    }

    let mut options = sim::SimOptions::new(file.clone());
    options.seed = args.seed;
    options.duration_ns = args
        .duration
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    options.cost_table = cost_table(&args, &loaded.scenario.cost_table, &dir)?;
    options.command = recorded_command(std::env::args());
    let stop = Arc::new(AtomicBool::new(false));
    options.stop = Some(Arc::clone(&stop));
    install_signal_handler(Arc::clone(&stop))?;
    if args.mode == Mode::Real {
        return run_real(&args, &loaded, file, options, stop);
    }

    let sc = &loaded.scenario;
    let end_ns = options
        .duration_ns
        .map_or(sc.duration_ns, |d| d.min(sc.duration_ns));
    if !args.quiet {
        eprintln!(
            "meshrig run: {} — sim, seed {}, {} of virtual time, cost table {}@{}",
            sc.name,
            options.seed.unwrap_or(sc.seed),
            format_duration(Duration::from_nanos(end_ns)),
            options.cost_table.name,
            options.cost_table.version,
        );
    }

    let runs = if args.check_determinism { 2 } else { 1 };
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let result = simulate(&loaded, &options, show_progress, (1, runs))?;
    if args.check_determinism {
        if result.interrupted {
            eprintln!("meshrig run: determinism check skipped: the run was interrupted");
        } else {
            let second = simulate(&loaded, &options, show_progress, (2, runs))?;
            if second.interrupted {
                eprintln!("meshrig run: determinism check skipped: the second run was interrupted");
                // The first run is complete: it is what gets written, and the exit
                // code (130) says the user asked to stop.
            } else {
                let a = output::to_json(&result)?;
                let b = output::to_json(&second)?;
                match first_difference(&a, &b) {
                    None => {
                        if !args.quiet {
                            eprintln!("meshrig run: deterministic: {} bytes identical", a.len());
                        }
                    }
                    Some((line, left, right)) => {
                        eprintln!(
                            "meshrig run: NOT deterministic: the two runs' results differ first at line {line}:\n  run 1: {left}\n  run 2: {right}"
                        );
                        return Ok(ExitCode::from(1));
                    }
                }
            }
        }
    }
    let interrupted = stop.load(Ordering::Relaxed) || result.interrupted;
    if result.interrupted {
        eprintln!(
            "meshrig run: interrupted at {} of {} virtual time; the result covers what ran",
            format_duration(Duration::from_nanos(
                result.sim.as_ref().map_or(0, |s| s.end_time_ns.min(end_ns))
            )),
            format_duration(Duration::from_nanos(end_ns)),
        );
    }

    report(&args, &result, interrupted)
}

/// `--mode real`: the scenario on real processes (see [`real`]).
fn run_real(
    args: &RunArgs,
    loaded: &scenario::Loaded,
    file: String,
    options: sim::SimOptions,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    if args.check_determinism {
        return Err(usage(
            "--check-determinism needs --mode sim: real runs depend on the machine and are not deterministic",
        ));
    }
    if args.cost_table.is_some() {
        return Err(usage(
            "--cost-table needs --mode sim: real mode measures real CPU instead of charging a cost table",
        ));
    }
    let sc = &loaded.scenario;
    // Child logs and configs: under --out (kept), else a temporary directory.
    let (work_dir, temporary) = match &args.out {
        Some(out) => (out.join("real"), false),
        None => (
            std::env::temp_dir().join(format!("meshrig-real-{}", std::process::id())),
            true,
        ),
    };
    let opts = real::RealOptions {
        scenario_path: args.scenario.clone(),
        file,
        seed: args.seed.unwrap_or(sc.seed),
        duration_ns: options.duration_ns,
        command: options.command,
        stop: Arc::clone(&stop),
        work_dir: work_dir.clone(),
        quiet: args.quiet,
    };
    if !args.quiet {
        eprintln!(
            "meshrig run: {} — real processes on 127.0.0.1, seed {}",
            sc.name, opts.seed
        );
    }
    let outcome = real::run(loaded, &opts);
    if temporary && outcome.is_ok() {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    let result = outcome.map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n(child logs are in {})",
            work_dir.join("logs").display()
        )
    })?;
    let interrupted = stop.load(Ordering::Relaxed) || result.interrupted;
    if interrupted {
        eprintln!(
            "meshrig run: interrupted after {} of {}; the result covers what ran",
            format_duration(Duration::from_nanos(result.duration_ns)),
            format_duration(Duration::from_nanos(
                opts_duration(args).map_or(sc.duration_ns, |d| d.min(sc.duration_ns))
            )),
        );
    }
    report(args, &result, interrupted)
}

/// `--duration` in ns.
fn opts_duration(args: &RunArgs) -> Option<u64> {
    args.duration
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Writes, prints and judges a result: the exit code.
fn report(args: &RunArgs, result: &ScenarioResult, interrupted: bool) -> anyhow::Result<ExitCode> {
    // Files first, so a closed stdout cannot lose the result.
    let mut write_failed = false;
    if let Some(out) = &args.out {
        match output::write_dir(out, result) {
            Ok(()) => {
                if !args.quiet {
                    eprintln!(
                        "meshrig run: wrote {} and {}",
                        out.join(output::RESULT_FILE).display(),
                        out.join(output::EVENTS_FILE).display()
                    );
                }
            }
            Err(e) => {
                eprintln!("meshrig run: error: --out {}: {e:#}", out.display());
                write_failed = true;
            }
        }
    }
    let summary_shown = !args.quiet && !args.json;
    if args.json {
        output::print_json(result)?;
    } else if !args.quiet {
        print!("{}", render::summary(result));
    }
    if !summary_shown {
        for w in result.not_applied.iter() {
            eprintln!("meshrig run: not applied: {w}");
        }
        for w in result.warnings.iter() {
            eprintln!("meshrig run: warning: {w}");
        }
        for a in result
            .assertions
            .iter()
            .filter(|a| !a.passed && !a.advisory)
        {
            eprintln!("meshrig run: assertion FAILED: {} — {}", a.expr, a.detail);
        }
    }

    let failed = result.assertions.iter().any(|a| !a.passed && !a.advisory);
    Ok(if interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if failed || write_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One simulator run with an optional progress bar; `which` is (this run, of runs).
fn simulate(
    loaded: &scenario::Loaded,
    options: &sim::SimOptions,
    show_progress: bool,
    which: (u32, u32),
) -> anyhow::Result<ScenarioResult> {
    let bar = show_progress.then(|| progress_bar(which));
    let mut progress = |p: sim::Progress| {
        if let Some(bar) = &bar {
            bar.set_length(p.end_ns.div_ceil(1_000_000).max(1));
            bar.set_position(p.now_ns / 1_000_000);
            // Whole seconds once the run is a minute or longer (`4m54s / 1h`), else ms.
            let unit = if p.end_ns >= 60_000_000_000 {
                1_000_000_000
            } else {
                1_000_000
            };
            let shown = |ns: u64| format_duration(Duration::from_nanos(ns / unit * unit));
            bar.set_message(format!(
                "{} / {} virtual · {} events",
                shown(p.now_ns),
                shown(p.end_ns),
                render::thousands(p.events),
            ));
        }
    };
    let outcome = sim::run(loaded, options, &mut progress);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // The validator accepted the scenario but the simulator could not build it: the
    // scenario is still what is wrong.
    outcome.map_err(|e| usage(format!("{}: cannot simulate: {e}", options.scenario_file)))
}

fn progress_bar((run, runs): (u32, u32)) -> ProgressBar {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {prefix}{wide_msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    if runs > 1 {
        bar.set_prefix(format!("run {run}/{runs} · "));
    }
    bar
}

/// The cost table: `--cost-table`, else `spec.sim.costTable`. `default` is the built-in
/// table; anything else is a YAML file (a `--cost-table` path is relative to the
/// working directory, a `spec.sim.costTable` path to the scenario file).
fn cost_table(args: &RunArgs, from_spec: &str, scenario_dir: &Path) -> anyhow::Result<CostTable> {
    let (name, path, origin) = match &args.cost_table {
        Some(name) => (name.as_str(), PathBuf::from(name), "--cost-table"),
        None => (
            from_spec,
            scenario_dir.join(from_spec),
            "spec.sim.costTable",
        ),
    };
    if name == scenario::DEFAULT_COST_TABLE {
        return Ok(CostTable::default_table());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        usage(format!(
            "{origin} {name}: cannot read {}: {e} (expected `default` or a cost table YAML file)",
            path.display()
        ))
    })?;
    CostTable::parse(name, &text).map_err(|e| usage(format!("{origin}: {e}")))
}

/// Sets `stop` on the first SIGINT/SIGTERM; a second one exits at once (130) without
/// writing anything. The handlers are installed before this returns, so a signal that
/// arrives as soon as the run starts is never lost.
fn install_signal_handler(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal-handling runtime")?;
    #[cfg(unix)]
    let mut signals = {
        use tokio::signal::unix::{SignalKind, signal};
        let _guard = runtime.enter();
        (
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        )
    };
    std::thread::Builder::new()
        .name("meshrig-signals".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                for n in 0.. {
                    #[cfg(unix)]
                    tokio::select! {
                        _ = signals.0.recv() => {}
                        _ = signals.1.recv() => {}
                    }
                    #[cfg(not(unix))]
                    let _ = tokio::signal::ctrl_c().await;
                    if n == 0 {
                        stop.store(true, Ordering::Relaxed);
                    } else {
                        eprintln!(
                            "meshrig run: interrupted again; exiting without writing results"
                        );
                        std::process::exit(i32::from(EXIT_INTERRUPTED));
                    }
                }
            });
        })
        .context("starting the signal-handling thread")?;
    Ok(())
}

/// The first line where two texts differ: (1-based line, left, right); `None` when
/// they are identical.
fn first_difference(a: &str, b: &str) -> Option<(usize, String, String)> {
    if a == b {
        return None;
    }
    let mut left = a.lines();
    let mut right = b.lines();
    let mut n = 0;
    loop {
        n += 1;
        match (left.next(), right.next()) {
            (Some(l), Some(r)) if l == r => {}
            (l, r) => {
                let show = |s: Option<&str>| s.map_or("(end of text)".to_owned(), str::to_owned);
                return Some((n, show(l), show(r)));
            }
        }
    }
}

/// `FILE:LINE: FIELD.PATH: SEVERITY: MESSAGE`, as `meshrig validate` prints findings.
fn format_finding(f: &Finding) -> String {
    format!(
        "{}:{}: {}: {}: {}",
        f.file, f.line, f.path, f.severity, f.message
    )
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be above 0 (e.g. 10s)".to_owned());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_names_the_line() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
        assert_eq!(
            first_difference("a\nb\nc", "a\nx\nc"),
            Some((2, "b".to_owned(), "x".to_owned()))
        );
        assert_eq!(
            first_difference("a\nb", "a"),
            Some((2, "b".to_owned(), "(end of text)".to_owned()))
        );
    }

    #[test]
    fn duration_flag_must_be_positive() {
        assert_eq!(parse_positive_duration("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("soon").is_err());
    }
}

/// The command line as the result records it: as given, except where the files go
/// (`--out DIR` becomes `--out <dir>`), so the same run written to two directories
/// gives byte-identical files.
fn recorded_command(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_out = false;
    for arg in args {
        if after_out {
            out.push("<dir>".to_owned());
            after_out = false;
        } else if arg == "--out" {
            out.push(arg);
            after_out = true;
        } else if let Some(_dir) = arg.strip_prefix("--out=") {
            out.push("--out=<dir>".to_owned());
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod recorded_command_tests {
    use super::recorded_command;

    #[test]
    fn the_output_directory_is_not_recorded() {
        let args = ["meshrig", "run", "s.yaml", "--out", "/tmp/a", "--seed", "3"];
        let got = recorded_command(args.iter().map(|s| s.to_string()));
        assert_eq!(
            got,
            ["meshrig", "run", "s.yaml", "--out", "<dir>", "--seed", "3"]
        );
        let got = recorded_command(["run", "--out=/x"].iter().map(|s| s.to_string()));
        assert_eq!(got, ["run", "--out=<dir>"]);
    }
}
