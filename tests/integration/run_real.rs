//! `meshrig run --mode real`: the scenario on real processes — a control plane, an
//! application and a sidecar per instance, client sidecars — through real sockets on
//! 127.0.0.1; the result in the same schema as sim mode; and no child outliving the
//! runner, however it ends.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{TempDir, meshrig, read_json, run_with_limit};

const LIMIT: Duration = Duration::from_secs(180);

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/scenarios")
        .join(name)
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing"))
}

/// Weighted split, header-match routing, retries over a half-failing instance,
/// outlier ejection moving traffic, fault delay and abort, authorization 403, a config
/// push mid-run without failed requests, and routing through a control-plane outage —
/// one scenario (`tests/data/scenarios/real-behaviours.yaml`), each behaviour an
/// assertion that gates the exit code, plus checks on the result here.
#[test]
fn mesh_behaviours_hold_on_real_sockets() {
    let dir = TempDir::new("run-real-behaviours");
    let out = dir.path("out");
    let output = run_with_limit(
        meshrig()
            .args(["run", "--mode", "real", "--quiet", "--out"])
            .arg(&out)
            .arg(data("real-behaviours.yaml")),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let r = read_json(&out.join("result.json"));
    let failed: Vec<&Value> = r["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["passed"] == false)
        .collect();
    assert_eq!(
        output.status.code(),
        Some(0),
        "failed: {failed:#?}\n{stderr}"
    );
    assert_eq!(r["kind"], "scenario");
    assert_eq!(r["scenario"]["mode"], "real");
    assert!(r["sim"].is_null());

    // Every workload ran for the whole 4 s at its rate (±10%: wall clock).
    let split = f(&r, "/services/split/requests_total");
    assert!((720.0..=880.0).contains(&split), "split requests {split}");
    // The delay fault: every faulty request waited at least 100 ms.
    assert!(f(&r, "/services/faulty/latency_us/p50") >= 100_000.0);
    // Aborted requests never reached the app: it served only the other half.
    let served = f(&r, "/versions/faulty:v1/requests_total");
    let sent = f(&r, "/services/faulty/requests_total");
    assert!(served < sent * 0.65, "faulty served {served} of {sent}");
    // Denied requests never reached the app either.
    assert_eq!(f(&r, "/versions/guarded:v1/requests_total"), 0.0);
    assert!(f(&r, "/services/guarded/status_codes/403") > 0.0);
    // The failing ejecting:v1 got a few requests before it was ejected, then none.
    assert!(f(&r, "/versions/ejecting:v1/requests_total") < 20.0);
    // What real mode cannot do is said, not skipped.
    let not_applied = r["not_applied"].to_string();
    assert!(not_applied.contains("clock skew"), "{not_applied}");
    // The faults are in the event log on the run's timeline.
    let kinds: Vec<&str> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    // The killed instance served before its SIGKILL and again after its restart (its
    // log is appended to, not replaced).
    let killed = r["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "killed-v1-a-0")
        .expect("killed-v1-a-0");
    let served = killed["requests_served"].as_u64().unwrap();
    // About 25 rps for 1.8 s before and 1.8 s after (less its start-up): either side
    // alone is at most about 45.
    assert!(served > 60, "killed-v1-a-0 served {served}");
    for kind in [
        "instance_down",
        "instance_up",
        "fault",
        "fault_end",
        "fault_abort",
        "fault_delay",
        "retry",
        "ejection",
    ] {
        assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
}

/// Starts `meshrig run --mode real` on `scenario` and returns it once its children are
/// up (the runner says so on stderr), with the stderr lines still to come.
fn start_run(scenario: &Path, out: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = meshrig()
        .args(["run", "--mode", "real", "--out"])
        .arg(out)
        .arg(scenario)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meshrig run");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("links up") => return (child, rx),
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("the real run never said its processes are up ({e:?})");
            }
        }
    }
}

/// The pids whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The fields after the parenthesised command: state, ppid, ...
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ppid = after.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        after.split_whitespace().next() != Some("Z")
    })
}

fn wait_all_gone(pids: &[u32], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for p in &left {
                let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
            }
            panic!("{what}: children {left:?} outlived the runner by 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const LONG: &str = "\
apiVersion: meshrig.dev/v1
kind: Scenario
metadata:
  name: long
spec:
  duration: 60s
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 2 }]
  workload:
    - target: web
      rate: { constant: 50/s }
  assertions:
    - \"success_rate(client) > 99%\"
";

/// SIGKILL of the runner leaves no orphan: every child sees its stdin close and exits.
#[test]
fn no_child_outlives_a_sigkilled_runner() {
    let dir = TempDir::new("run-real-sigkill");
    let file = dir.path("long.yaml");
    std::fs::write(&file, LONG).unwrap();
    let (mut child, _rx) = start_run(&file, &dir.path("out"));
    let kids = children_of(child.id());
    // control plane, CA, two apps, two sidecars, one client sidecar
    assert_eq!(kids.len(), 7, "children {kids:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    wait_all_gone(&kids, "after SIGKILL");
}

/// Ctrl-C stops the run early: exit 130, the partial result written, children gone.
#[test]
fn interrupted_real_run_exits_130_with_a_partial_result() {
    let dir = TempDir::new("run-real-sigint");
    let file = dir.path("long.yaml");
    std::fs::write(&file, LONG).unwrap();
    let out = dir.path("out");
    let (mut child, rx) = start_run(&file, &out);
    let kids = children_of(child.id());
    assert!(!kids.is_empty());
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            Instant::now() < deadline,
            "meshrig run did not stop within 60 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(130));
    // The reader thread ends at the pipe's EOF, now that the runner has exited.
    let stderr: Vec<String> = rx.iter().collect();
    assert!(
        stderr.iter().any(|l| l.contains("interrupted after")),
        "{stderr:?}"
    );
    wait_all_gone(&kids, "after SIGINT");
    let r = read_json(&out.join("result.json"));
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["scenario"]["mode"], "real");
    let requests = r["totals"]["requests_total"].as_u64().unwrap();
    assert!(requests > 0 && requests < 3000, "requests {requests}");
}

/// A scenario with no mesh runs the apps alone, calling each other directly.
#[test]
fn no_mesh_baseline_runs_apps_directly() {
    let dir = TempDir::new("run-real-baseline");
    let out = dir.path("out");
    let baseline = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/baseline.yaml");
    let output = run_with_limit(
        meshrig()
            .args([
                "run",
                "--mode",
                "real",
                "--quiet",
                "--duration",
                "2s",
                "--out",
            ])
            .arg(&out)
            .arg(&baseline),
        LIMIT,
    );
    let r = read_json(&out.join("result.json"));
    // Truncated to 2 s, the request-count assertions of the 10 s file fail; the
    // behaviour is what is checked here.
    assert_eq!(output.status.code(), Some(1), "{r}");
    assert_eq!(f(&r, "/totals/success_rate"), 1.0);
    let calls = f(&r, "/edges/frontend->backend/requests_total");
    let sent = f(&r, "/edges/client->frontend/requests_total");
    assert!(
        sent > 500.0 && calls == sent,
        "{calls} calls for {sent} requests"
    );
}

/// The scenario library runs in real mode too: the outlier scenario in full (its
/// behavioural assertions gate), the others shortened (their verdicts are about the
/// whole timeline, so only the run itself is checked).
#[test]
fn library_scenarios_run_in_real_mode() {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let dir = TempDir::new("run-real-library");
    for (file, duration, gates) in [
        ("outlier-failover.yaml", None, true),
        ("sidecar-overhead-2.yaml", Some("3s"), false),
        ("retry-storm.yaml", Some("3s"), false),
        ("fault-injection.yaml", Some("3s"), false),
        ("canary-rollout.yaml", Some("6s"), false),
    ] {
        let out = dir.path(file);
        let mut cmd = meshrig();
        cmd.args(["run", "--mode", "real", "--quiet", "--out"])
            .arg(&out);
        if let Some(d) = duration {
            cmd.args(["--duration", d]);
        }
        let output = run_with_limit(cmd.arg(lib.join(file)), LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = output.status.code();
        if gates {
            assert_eq!(code, Some(0), "{file}: {stderr}");
        } else {
            assert!(matches!(code, Some(0 | 1)), "{file}: {code:?} {stderr}");
        }
        let r = read_json(&out.join("result.json"));
        assert_eq!(r["scenario"]["mode"], "real", "{file}");
        assert!(f(&r, "/totals/requests_total") > 0.0, "{file}");
    }
}

/// The network between sidecars, for real: a 5 ms one-way inter-zone link through the
/// fault-injecting relay, a partition (every call fails while it lasts, and recovers),
/// and a latency fault. Latency figures are checked as lower bounds only (a loaded
/// machine can only add to them).
#[test]
fn links_carry_latency_partitions_and_latency_faults() {
    let dir = TempDir::new("run-real-links");
    let out = dir.path("out");
    let output = run_with_limit(
        meshrig()
            .args(["run", "--mode", "real", "--quiet", "--out"])
            .arg(&out)
            .arg(data("real-links.yaml")),
        LIMIT,
    );
    let r = read_json(&out.join("result.json"));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        r["assertions"]
    );
    let actual = |expr: &str| {
        r["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["expr"] == expr)
            .and_then(|a| a["actual"].as_f64())
            .unwrap_or_else(|| panic!("no actual for {expr}"))
    };
    // Two 5 ms one-way legs per call; then two 20 ms ones.
    assert!(actual("p50(web->db)[0s..900ms] > 10ms") >= 10.0);
    assert!(actual("p50(web->db)[2600ms..3400ms] > 40ms") >= 40.0);
}

/// Runs `scenario` in real mode into a fresh directory; (exit code, result, stderr,
/// the run's directory).
fn run_real(scenario: &str, what: &str) -> (Option<i32>, Value, String, TempDir) {
    let dir = TempDir::new(what);
    let out = dir.path("out");
    let output = run_with_limit(
        meshrig()
            .args(["run", "--mode", "real", "--quiet", "--out"])
            .arg(&out)
            .arg(data(scenario)),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let r = read_json(&out.join("result.json"));
    (output.status.code(), r, stderr, dir)
}

fn failed_assertions(r: &Value) -> Vec<&Value> {
    r["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["passed"] == false)
        .collect()
}

fn event_count(r: &Value, kind: &str) -> usize {
    r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .count()
}

/// STRICT mTLS with 3 s certificates from the CA, every request a new handshake,
/// and two root rotations under constant load: no request fails, at least two
/// rotations run their three phases, every sidecar renews several times, and the
/// callee sidecars saw the callers' SPIFFE identities.
#[test]
fn root_rotations_under_load_fail_no_request() {
    let (code, r, stderr, dir) = run_real("real-mtls-rotation.yaml", "run-real-rotation");
    assert_eq!(
        code,
        Some(0),
        "failed: {:#?}\n{stderr}",
        failed_assertions(&r)
    );
    assert_eq!(f(&r, "/totals/errors_total"), 0.0);
    for kind in [
        "root_rotation_started",
        "root_signing_switched",
        "root_retired",
    ] {
        assert!(event_count(&r, kind) >= 2, "fewer than 2 {kind} events");
    }
    assert_eq!(event_count(&r, "mtls_handshake_failed"), 0);
    // 3 s certificates over 15 s: every sidecar renewed several times.
    for i in r["instances"].as_array().unwrap() {
        let issued = i["certs_issued"].as_u64().unwrap();
        assert!(
            issued >= 4,
            "{} was issued {issued} certificates",
            i["name"]
        );
    }
    assert!(r["not_applied"].to_string().find("mtls").is_none());
    // The callee's access log names the caller's SPIFFE identity: it was mTLS.
    let log = std::fs::read_to_string(dir.path("out").join("real/logs/back-v1-a-0.access.jsonl"))
        .expect("back's access log");
    let inbound: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reporter"] == "destination")
        .collect();
    assert!(!inbound.is_empty());
    assert!(
        inbound
            .iter()
            .all(|v| v["downstream_peer_uri_san"] == "spiffe://cluster.local/ns/default/sa/front"),
        "{:?}",
        inbound.first()
    );
}

/// The CA down for longer than a certificate lives: renewals fail, certificates
/// expire, handshakes (so requests) fail with the reason logged, and once the CA is
/// back every sidecar renews and requests succeed again (the scenario's assertions).
#[test]
fn a_ca_outage_longer_than_the_ttl_fails_handshakes_then_recovers() {
    let (code, r, stderr, _dir) = run_real("real-ca-outage.yaml", "run-real-ca-outage");
    assert_eq!(
        code,
        Some(0),
        "failed: {:#?}\n{stderr}",
        failed_assertions(&r)
    );
    // The side that checks the expired certificate says so; the other side only sees
    // the alert it was sent.
    let refused: Vec<&Value> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "mtls_handshake_failed")
        .collect();
    assert!(
        refused
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("expired at")),
        "no refusal names the expiry: {:?}",
        refused.iter().take(3).collect::<Vec<_>>()
    );
    let expiries: u64 = r["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["cert_expiries"].as_u64().unwrap())
        .sum();
    assert!(expiries >= 1);
}
