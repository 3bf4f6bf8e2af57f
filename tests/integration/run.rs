//! `meshrig run SCENARIO`: the simulator driven from the command line — exit codes,
//! the summary, `--out` files, determinism, `--duration`, and Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{TempDir, meshrig, read_json, run_with_limit};

const LIMIT: Duration = Duration::from_secs(120);

/// The minimal scenario: 2 instances of `web`, 200 rps for 2 s, one assertion.
const BASIC: &str = "\
apiVersion: meshrig.dev/v1
kind: Scenario
metadata:
  name: basic
spec:
  duration: 2s
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 2 }]
  workload:
    - target: web
      rate: { constant: 200/s }
  assertions:
    - \"success_rate(web) > 99%\"
";

/// Like [`BASIC`] with a random service time, so the seed changes the result.
const RANDOM: &str = "\
apiVersion: meshrig.dev/v1
kind: Scenario
metadata:
  name: random
spec:
  duration: 2s
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 2 }]
        app:
          serviceTime: { lognormal: { p50: 2ms, p99: 20ms } }
  workload:
    - target: web
      rate: { constant: 200/s }
  assertions:
    - \"success_rate(web) > 99%\"
";

/// Writes `text` as `scenario.yaml` in a fresh directory.
fn scenario(name: &str, text: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(name);
    let file = dir.path("scenario.yaml");
    std::fs::write(&file, text).expect("write scenario");
    (dir, file)
}

fn run(file: &Path, extra: &[&str]) -> Output {
    run_with_limit(meshrig().arg("run").arg(file).args(extra), LIMIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

#[test]
fn passing_scenario_exits_0_and_writes_the_result() {
    let (dir, file) = scenario("run-pass", BASIC);
    let out_dir = dir.path("out/nested");
    let out = run(&file, &["--out", out_dir.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );

    let r = read_json(&out_dir.join("result.json"));
    assert_eq!(r["schema"], "meshrig.dev/result/v1");
    assert_eq!(r["kind"], "scenario");
    assert_eq!(r["interrupted"], false);
    assert_eq!(r["scenario"]["name"], "basic");
    assert_eq!(r["scenario"]["mode"], "sim");
    let requests = u(&r, "/totals/requests_total");
    assert!(
        (380..=420).contains(&requests),
        "200/s × 2s ≈ 400, got {requests}"
    );
    assert_eq!(r["assertions"][0]["passed"], true, "{}", r["assertions"]);
    let raw = std::fs::read_to_string(out_dir.join("result.json")).unwrap();
    assert!(raw.ends_with("}\n"), "pretty JSON with a trailing newline");

    let events = std::fs::read_to_string(out_dir.join("events.jsonl")).expect("events.jsonl");
    let logged = r["events"].as_array().expect("events array").len();
    assert_eq!(events.lines().count(), logged);
    for line in events.lines() {
        let e: Value = serde_json::from_str(line).expect("one JSON event per line");
        assert!(e["t_ns"].is_u64() && e["kind"].is_string(), "{line}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // The summary: the service table, units in headers, the assertion verdict.
    assert!(stdout.contains("scenario basic"), "{stdout}");
    assert!(stdout.contains("p99 ms"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("web ")), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("PASS") && l.contains("success_rate(web) > 99%")),
        "{stdout}"
    );
}

#[test]
fn failing_assertion_exits_1_and_names_it() {
    let failing = BASIC.replace("success_rate(web) > 99%", "p99(web) < 1us");
    let (_dir, file) = scenario("run-fail", &failing);
    let out = run(&file, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("p99(web) < 1us")),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 1 assertions FAILED"), "{stdout}");

    // --quiet prints no summary, but the failure still reaches stderr.
    let out = run(&file, &["--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("assertion FAILED: p99(web) < 1us"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn invalid_scenario_exits_2_with_file_and_line_and_writes_nothing() {
    for (what, bad) in [
        (
            "unknown field",
            BASIC.replace("  duration: 2s\n", "  duration: 2s\n  durration: 3s\n"),
        ),
        (
            "unknown service",
            BASIC.replace("- target: web", "- target: nosuch"),
        ),
    ] {
        let (dir, file) = scenario("run-invalid", &bad);
        let out_dir = dir.path("out");
        let out = run(&file, &["--out", out_dir.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        let prefix = format!("{}:", file.display());
        let located = stderr.lines().any(|l| {
            l.strip_prefix(&prefix)
                .and_then(|rest| rest.split(':').next())
                .is_some_and(|line| line.parse::<u32>().is_ok_and(|n| n > 0))
        });
        assert!(located, "{what}: no FILE:LINE finding in {stderr}");
        assert!(stderr.contains("error"), "{what}: {stderr}");
        assert!(stderr.contains("nothing ran"), "{what}: {stderr}");
        assert!(
            !out_dir.join("result.json").exists(),
            "{what}: a result was written"
        );
        assert!(out.stdout.is_empty(), "{what}: {}", text(&out.stdout));
    }
}

#[test]
fn unreadable_scenario_exits_2_naming_it() {
    let dir = TempDir::new("run-missing");
    let file = dir.path("missing.yaml");
    let out = run(&file, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("missing.yaml"), "{stderr}");
}

#[test]
fn same_seed_is_byte_identical_and_another_seed_differs() {
    let (dir, file) = scenario("run-seed", RANDOM);
    let out_dir = dir.path("out");
    let out_arg = out_dir.to_str().unwrap();
    let files = |seed: &str| {
        // The command line is part of the result, so each run uses the same one.
        let out = run(&file, &["--seed", seed, "--out", out_arg, "--quiet"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        (
            std::fs::read(out_dir.join("result.json")).unwrap(),
            std::fs::read(out_dir.join("events.jsonl")).unwrap(),
        )
    };
    let first = files("7");
    let again = files("7");
    assert!(
        first.0 == again.0,
        "result.json differs between two runs with seed 7"
    );
    assert!(
        first.1 == again.1,
        "events.jsonl differs between two runs with seed 7"
    );
    let r: Value = serde_json::from_slice(&first.0).unwrap();
    assert_eq!(r["scenario"]["seed"], 7);

    let out = run(&file, &["--seed", "8", "--out", out_arg, "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let other: Value = read_json(&out_dir.join("result.json"));
    assert_eq!(other["scenario"]["seed"], 8);
    assert_ne!(
        r["totals"]["latency_us"], other["totals"]["latency_us"],
        "seeds 7 and 8 gave the same latencies"
    );
}

#[test]
fn check_determinism_says_so() {
    let (_dir, file) = scenario("run-determinism", RANDOM);
    let out = run(&file, &["--check-determinism"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("deterministic:"))
        .unwrap_or_else(|| panic!("no determinism verdict in {stderr}"));
    assert!(line.ends_with("bytes identical"), "{line}");
    assert!(!text(&out.stdout).is_empty(), "the summary still follows");
}

#[test]
fn duration_flag_truncates_the_timeline() {
    let (_dir, file) = scenario("run-duration", BASIC);
    let full = run(&file, &["--json", "--quiet"]);
    assert_eq!(full.status.code(), Some(0), "{}", text(&full.stderr));
    let full: Value = serde_json::from_slice(&full.stdout).expect("--json prints the result");
    assert!(full["scenario"].get("truncated_to_ns").is_none());

    let half = run(&file, &["--duration", "1s", "--json", "--quiet"]);
    assert_eq!(half.status.code(), Some(0), "{}", text(&half.stderr));
    let half: Value = serde_json::from_slice(&half.stdout).expect("--json prints the result");
    assert_eq!(u(&half, "/scenario/truncated_to_ns"), 1_000_000_000);
    assert_eq!(u(&half, "/scenario/duration_requested_ns"), 2_000_000_000);
    let (a, b) = (
        u(&full, "/totals/requests_total") as f64,
        u(&half, "/totals/requests_total") as f64,
    );
    let ratio = b / a;
    assert!(
        (0.45..=0.55).contains(&ratio),
        "1s of 2s sent {b} of {a} requests"
    );

    let zero = run(&file, &["--duration", "0s"]);
    assert_eq!(zero.status.code(), Some(2), "--duration 0 is a usage error");
}

#[test]
fn real_mode_refuses_sim_only_flags() {
    let (_dir, file) = scenario("run-real", BASIC);
    let out = run(&file, &["--mode", "real", "--check-determinism"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--check-determinism needs --mode sim"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn cost_table_from_the_flag_or_the_scenario() {
    let table = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/calibration/default.yaml"),
    )
    .expect("the built-in cost table");
    let with_spec = format!("{BASIC}  sim:\n    costTable: tables/mine.yaml\n");
    let (dir, file) = scenario("run-cost-table", &with_spec);
    std::fs::create_dir_all(dir.path("tables")).unwrap();
    std::fs::write(dir.path("tables/mine.yaml"), table).unwrap();

    // spec.sim.costTable is relative to the scenario file.
    let out = run(&file, &["--json", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let used = r["sim"]["cost_table"].as_str().unwrap();
    assert!(used.starts_with("tables/mine.yaml@"), "{used}");

    // --cost-table overrides it.
    let out = run(&file, &["--json", "--quiet", "--cost-table", "default"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["sim"]["cost_table"]
            .as_str()
            .unwrap()
            .starts_with("default@")
    );

    let missing = dir.path("nope.yaml");
    let out = run(&file, &["--cost-table", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--cost-table"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_documents_every_flag() {
    let out = run_with_limit(meshrig().args(["run", "--help"]), LIMIT);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for flag in [
        "--mode",
        "--seed",
        "--out",
        "--duration",
        "--check-determinism",
        "--cost-table",
        "--quiet",
        "--json",
        "[default: sim]",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}

#[test]
fn sigint_writes_the_partial_result_and_exits_130() {
    // An hour of virtual time at 2000 rps: far more than a test should wait for.
    let long = BASIC
        .replace("duration: 2s", "duration: 1h")
        .replace("constant: 200/s", "constant: 2000/s");
    let (dir, file) = scenario("run-sigint", &long);
    let out_dir = dir.path("out");
    let mut child = meshrig()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshrig run");

    // Read stderr on a thread; the first line says the run has started (its signal
    // handler is installed before that line is printed).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains("1h of virtual time") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("the run never said it started ({e:?})");
            }
        }
    }
    // Let it get some way into the timeline, then interrupt.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "an hour of virtual time at 2000 rps finished within {:?}",
        started.elapsed()
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());

    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("meshrig run did not stop within 60 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(code, Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let r = read_json(&out_dir.join("result.json"));
    assert_eq!(r["interrupted"], true);
    let requests = u(&r, "/totals/requests_total");
    assert!(
        requests > 0 && requests < 2000 * 3600,
        "a partial run sent {requests} requests"
    );
    assert!(out_dir.join("events.jsonl").exists());
    assert!(stdout.contains("INTERRUPTED"), "{stdout}");
}

/// Every file under `dir`, by name, with its bytes.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read --out dir")
        .map(|e| {
            let e = e.expect("dir entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("read output file"))
        })
        .collect();
    out.sort();
    out
}

/// The richest scenario we have (every fault kind, every distribution, mTLS with
/// short certificates, canary, retries, outlier detection, both workload kinds):
/// two runs write byte-identical files, and another seed changes them.
#[test]
fn richest_scenario_is_byte_identical_across_runs() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scenarios/rich.yaml");
    let dir = TempDir::new("run-rich");
    let run_into = |seed: &str, out: &str| {
        // Different output directories: where the files go is not part of them.
        let out = dir.path(out);
        let o = run(
            &file,
            &["--seed", seed, "--out", out.to_str().unwrap(), "--quiet"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        files_under(&out)
    };
    let first = run_into("5", "first");
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["events.jsonl", "result.json"]);
    let r: Value = serde_json::from_slice(&first[1].1).unwrap();
    // The run exercised what it claims to.
    for kind in [
        "fault",
        "retry",
        "config_push",
        "cert_expired",
        "instance_down",
    ] {
        assert!(
            r["events_total"][kind].as_u64().unwrap_or(0) > 0,
            "no {kind} events: {}",
            r["events_total"]
        );
    }
    let second = run_into("5", "second");
    for ((name, a), (_, b)) in first.iter().zip(&second) {
        assert!(a == b, "{name} differs between two runs with seed 5");
    }
    let other = run_into("6", "other");
    assert!(
        first[1].1 != other[1].1,
        "seed 6 gave the same result as seed 5"
    );
}
