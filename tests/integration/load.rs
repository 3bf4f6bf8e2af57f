//! `meshrig load` against `meshrig echo`, over real sockets on 127.0.0.1.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    TempDir, closed_port, http_get, meshrig, read_json, run_with_limit, spawn_echo, wait_until,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `meshrig load ARGS --json FILE --quiet` and returns (exit code, result, stderr).
fn load(args: &[&str]) -> (i32, Value, String) {
    let dir = TempDir::new("load");
    let json = dir.path("out.json");
    let out = run_with_limit(
        meshrig()
            .arg("load")
            .args(args)
            .arg("--json")
            .arg(&json)
            .arg("--quiet"),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        json.exists(),
        "no result written; exit {:?}, stderr: {stderr}",
        out.status.code()
    );
    (out.status.code().unwrap_or(-1), read_json(&json), stderr)
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

#[test]
fn exact_count_closed_loop() {
    let echo = spawn_echo(&[]);
    let (code, r, stderr) = load(&["-n", "137", "-c", "3", &echo.url("/")]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(u(&r, "/requests_total"), 137);
    assert_eq!(u(&r, "/status_codes/200"), 137);
    assert_eq!(u(&r, "/latency_us/count"), 137);
    assert_eq!(r["mode"], "closed");
    assert!(r["rps_target"].is_null());
    assert_eq!(r["schema"], "meshrig.dev/result/v1");
}

#[test]
fn exact_count_open_loop_and_schedule_kept() {
    let echo = spawn_echo(&[]);
    let (code, r, stderr) = load(&["--qps", "400", "-n", "300", "-c", "4", &echo.url("/")]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(u(&r, "/requests_total"), 300);
    assert_eq!(r["mode"], "open");
    assert_eq!(r["rps_target"].as_f64(), Some(400.0));
    // 300 requests at 400 rps: the schedule spans 747.5 ms.
    let rps = r["rps_actual"].as_f64().unwrap();
    assert!((360.0..=410.0).contains(&rps), "rps_actual {rps}");
    assert_eq!(r["schedule"]["target_met"], true, "{r}");
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["latency_us"][key].is_u64(), "latency_us.{key}");
        assert!(r["latency_uncorrected_us"][key].is_u64());
    }
    for key in ["p75", "p9999", "mean", "stdev", "histogram"] {
        assert!(!r["latency_us"][key].is_null(), "latency_us.{key}");
    }
}

#[test]
fn duration_bounds_an_open_loop_run_exactly() {
    let echo = spawn_echo(&[]);
    let (code, r, stderr) = load(&["--qps", "200", "-t", "2s", &echo.url("/")]);
    assert_eq!(code, 0, "{stderr}");
    // Intended send times 0, 5 ms, ..., 1995 ms: exactly 400.
    assert_eq!(u(&r, "/requests_total"), 400);
    let series = r["timeseries"].as_array().unwrap();
    assert!(series.len() >= 2, "{series:?}");
    let responses: u64 = series
        .iter()
        .map(|s| s["responses"].as_u64().unwrap())
        .sum();
    assert_eq!(responses, 400, "time series accounts for every response");
}

#[test]
fn status_weights_hold_within_a_statistical_bound() {
    let echo = spawn_echo(&["--seed", "7"]);
    let n = 2000u64;
    let (code, r, stderr) = load(&["-n", "2000", "-c", "8", &echo.url("/?status=503:50")]);
    assert_eq!(code, 0, "{stderr}");
    let failed = u(&r, "/status_codes/503");
    let ok = u(&r, "/status_codes/200");
    assert_eq!(failed + ok, n);
    // Binomial(2000, 0.5): σ ≈ 22.4; allow 5σ.
    assert!(failed.abs_diff(n / 2) <= 112, "503s: {failed}");
    assert_eq!(u(&r, "/success_total"), ok);
}

#[test]
fn delay_moves_the_median() {
    let echo = spawn_echo(&[]);
    let (code, r, stderr) = load(&["-n", "40", "-c", "4", &echo.url("/?delay=20ms")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(u(&r, "/latency_us/p50") >= 20_000, "{}", r["latency_us"]);
    assert!(u(&r, "/latency_us/min") >= 20_000);
}

#[test]
fn http2_multiplexes_streams_on_one_connection() {
    let echo = spawn_echo(&[]);
    let (code, r, stderr) = load(&[
        "--http2",
        "-c",
        "1",
        "--qps",
        "200",
        "-n",
        "60",
        &echo.url("/?delay=50ms"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(u(&r, "/status_codes/200"), 60);
    assert_eq!(r["target"]["http_version"], "h2");
    let (status, body) = http_get(echo.addr, "/stats");
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).expect("stats JSON");
    assert!(
        stats["max_in_flight"].as_u64().unwrap() > 1,
        "one HTTP/2 connection should carry several requests at once: {stats}"
    );
    assert_eq!(
        stats["connections_total"].as_u64(),
        Some(1),
        "all streams on one connection (the /stats request is counted after): {stats}"
    );
}

#[test]
fn group_by_header_counts_backends() {
    let echo = spawn_echo(&["--name", "reviews-v2"]);
    let (code, r, stderr) = load(&[
        "-n",
        "50",
        "--group-by-header",
        "x-meshrig-server",
        &echo.url("/"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(u(&r, "/groups/x-meshrig-server/reviews-v2"), 50);
}

#[test]
fn refused_target_counts_errors_and_fails() {
    let addr = closed_port();
    let (code, r, _) = load(&["--qps", "100", "-n", "20", &format!("http://{addr}/")]);
    assert_eq!(code, 1, "nothing succeeded: exit 1");
    assert_eq!(u(&r, "/errors_total"), 20);
    assert_eq!(u(&r, "/errors/connect_refused"), 20);
}

/// Starts `meshrig load ARGS --quiet --json JSON <echo>/` in the background and waits
/// (polling the server's `/stats`, bounded) until the server has seen more than
/// `requests` requests.
fn load_in_background(
    echo: &crate::support::Server,
    args: &[&str],
    json: &std::path::Path,
    requests: u64,
) -> std::process::Child {
    let child = meshrig()
        .arg("load")
        .args(args)
        .args(["--quiet", "--json"])
        .arg(json)
        .arg(echo.url("/"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = echo.addr;
    wait_until(Duration::from_secs(20), "traffic at the server", || {
        let (_, body) = http_get(addr, "/stats");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["requests_total"].as_u64().unwrap() > requests
    });
    child
}

#[test]
fn target_dying_mid_run_is_counted_and_the_run_goes_on() {
    let mut echo = spawn_echo(&[]);
    let dir = TempDir::new("dying");
    let json = dir.path("out.json");
    let child = load_in_background(&echo, &["--qps", "200", "-t", "3s", "-c", "2"], &json, 50);
    echo.child.kill().unwrap();
    echo.child.wait().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "some requests succeeded: exit 0; {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_json(&json);
    assert_eq!(
        u(&r, "/requests_total"),
        600,
        "every scheduled request is accounted for"
    );
    assert!(u(&r, "/success_total") > 50);
    assert!(u(&r, "/errors_total") > 0);
    let kinds = r["errors"].as_object().unwrap();
    assert!(
        kinds.contains_key("connect_refused") || kinds.contains_key("reset"),
        "{kinds:?}"
    );
}

#[test]
fn interrupt_writes_a_partial_result() {
    let echo = spawn_echo(&[]);
    let dir = TempDir::new("interrupt");
    let json = dir.path("out.json");
    let child = load_in_background(&echo, &["--qps", "100", "-t", "60s"], &json, 20);
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let r = read_json(&json);
    assert_eq!(r["interrupted"], true);
    let n = u(&r, "/requests_total");
    assert!(n > 20 && n < 6000, "partial run: {n}");
    assert_eq!(u(&r, "/status_codes/200"), n);
}

#[test]
fn fortio_json_is_written() {
    let echo = spawn_echo(&[]);
    let dir = TempDir::new("fortio");
    let fortio = dir.path("fortio.json");
    let out = run_with_limit(
        meshrig()
            .args([
                "load",
                "-n",
                "25",
                "--quiet",
                "--labels",
                "smoke",
                "--fortio-json",
            ])
            .arg(&fortio)
            .arg(echo.url("/")),
        LIMIT,
    );
    assert!(out.status.success());
    let f = read_json(&fortio);
    assert_eq!(f["RetCodes"]["200"], 25);
    assert_eq!(f["RequestedQPS"], "max");
    assert_eq!(f["Labels"], "smoke");
    assert_eq!(f["DurationHistogram"]["Count"], 25);
}

#[test]
fn summary_is_printed() {
    let echo = spawn_echo(&[]);
    let out = run_with_limit(
        meshrig()
            .args(["load", "-n", "30", "--qps", "300"])
            .arg(echo.url("/")),
        LIMIT,
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "corrected",
        "uncorrected",
        "p99.9",
        "200: 30",
        "of 300 requested",
        "histogram",
    ] {
        assert!(
            text.contains(needle),
            "missing {needle:?} in summary:\n{text}"
        );
    }
    // The verdict on the rate depends on how busy the machine is; that there is one
    // does not.
    assert!(
        text.contains("(target met)") || text.contains("(TARGET NOT MET)"),
        "no rate verdict in summary:\n{text}"
    );
}

/// Every bad input gets exit code 2 and a message naming what was wrong.
#[test]
fn bad_input_exits_2_with_a_message() {
    let dir = TempDir::new("bad");
    let not_pem = dir.path("not.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let not_pem = not_pem.to_str().unwrap().to_owned();
    let url = "http://127.0.0.1:9/";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["not a url"], "not a URL"),
        (vec!["ftp://127.0.0.1/"], "unsupported scheme"),
        (vec!["127.0.0.1:8080"], "scheme"),
        (vec!["--qps", "-5", url], "--qps"),
        (vec!["-c", "0", url], "--connections"),
        (vec!["-H", "NoColonHere", url], "Name: value"),
        (vec!["-H", "bad name: x", url], "header name"),
        (vec!["--body-file", "/nonexistent/body", url], "--body-file"),
        (vec!["-t", "5 minutes", url], "--duration"),
        (vec!["--timeout", "0", url], "--timeout"),
        (
            vec!["--cacert", &not_pem, "https://127.0.0.1:9/"],
            "--cacert",
        ),
        (
            vec![
                "--cert",
                &not_pem,
                "--key",
                &not_pem,
                "https://127.0.0.1:9/",
            ],
            "--cert",
        ),
        (vec!["--cert", &not_pem, "https://127.0.0.1:9/"], "--key"),
        (vec!["--insecure", url], "https://"),
    ];
    for (args, needle) in cases {
        let out = run_with_limit(meshrig().arg("load").args(&args), LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: expected {needle:?} in: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

/// A rate the server cannot sustain: the result says so (summary, warning, schedule),
/// the run still ends when `-t` ends, and every scheduled request is accounted for as
/// either sent or unsent.
#[test]
fn unreachable_rate_is_reported_and_the_run_ends_on_time() {
    let echo = spawn_echo(&[]);
    // 2 connections × 20 ms per request: at most ~100 rps of the 500 asked for.
    let (code, r, stderr) = load(&[
        "--qps",
        "500",
        "-t",
        "1s",
        "-c",
        "2",
        &echo.url("/?delay=20ms"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(r["schedule"]["target_met"], false);
    assert!(stderr.contains("target rate not met"), "{stderr}");
    let sent = u(&r, "/requests_total");
    let unsent = u(&r, "/schedule/unsent_total");
    assert_eq!(sent + unsent, 500, "sent {sent} + unsent {unsent}");
    assert!(sent <= 110, "{sent}");
    assert!(u(&r, "/schedule/behind_max_us") > 100_000);
    assert!(
        u(&r, "/duration_ns") < 1_500_000_000,
        "the run stops at -t instead of sending a backlog: {}",
        r["duration_ns"]
    );
    // Corrected latency sees the queueing; uncorrected sees ~20 ms per request.
    assert!(u(&r, "/latency_us/p50") > 100_000);
    assert!(u(&r, "/latency_uncorrected_us/p50") < 100_000);
}

/// HTTPS against `meshrig echo --cert --key`, verified with `--cacert`, over HTTP/1.1
/// and over HTTP/2 negotiated by ALPN; an untrusted server is a `tls` error.
#[test]
fn https_with_cacert_over_http1_and_http2() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let cert = format!("{data}/echo-cert.pem");
    let key = format!("{data}/echo-key.pem");
    let ca = format!("{data}/echo-ca.pem");
    let echo = spawn_echo(&["--cert", &cert, "--key", &key]);
    let url = format!("https://127.0.0.1:{}/?size=100", echo.addr.port());
    let (code, r, stderr) = load(&["-n", "40", "-c", "2", "--cacert", &ca, &url]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(u(&r, "/status_codes/200"), 40);
    assert_eq!(r["target"]["tls"], true);
    assert_eq!(u(&r, "/bytes_received"), 4000);
    let (code, r, stderr) = load(&["-n", "40", "-c", "1", "--http2", "--cacert", &ca, &url]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(u(&r, "/status_codes/200"), 40);
    assert_eq!(r["target"]["http_version"], "h2");
    // Without the CA the server is not trusted (no system root signs it).
    let (code, r, _) = load(&["-n", "5", "--cacert", &cert, &url]);
    assert_eq!(code, 1);
    assert_eq!(u(&r, "/errors/tls"), 5);
    // --insecure skips verification.
    let (code, r, stderr) = load(&["-n", "5", "--insecure", &url]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(u(&r, "/success_total"), 5);
}

/// Responses that close the connection (`close=true`) are not errors: the next
/// request opens a new connection.
#[test]
fn connection_close_responses_reconnect_without_errors() {
    let echo = spawn_echo(&[]);
    let (code, r, stderr) = load(&["-n", "200", "-c", "2", &echo.url("/?close=true")]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(u(&r, "/status_codes/200"), 200);
    assert_eq!(u(&r, "/errors_total"), 0);
}

/// Progress (responses, rps, p99 so far, errors) is drawn once a second when stdout is
/// a terminal — run under `script`, which gives the command a pseudo-terminal — and
/// never when stdout is not a terminal or with `--quiet`.
#[test]
fn progress_only_on_a_terminal_and_not_with_quiet() {
    let echo = spawn_echo(&[]);
    let bin = env!("CARGO_BIN_EXE_meshrig");
    let url = echo.url("/");
    let under_pty = |extra: &str| {
        let out = run_with_limit(
            std::process::Command::new("script").args([
                "-qefc",
                &format!("{bin} load --qps 100 -t 2500ms {extra} {url}"),
                "/dev/null",
            ]),
            LIMIT,
        );
        assert!(out.status.success(), "script: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = under_pty("");
    assert!(
        shown.contains(" responses  ")
            && shown.contains(" rps  p99 ")
            && shown.contains("errors 0"),
        "no progress line on a terminal:\n{shown}"
    );
    assert!(
        shown.contains("corrected"),
        "the summary follows the progress"
    );
    assert_eq!(under_pty("--quiet"), "", "--quiet prints nothing");
    // Not a terminal: the summary only.
    let out = run_with_limit(
        meshrig()
            .args(["load", "--qps", "100", "-t", "2500ms"])
            .arg(&url),
        LIMIT,
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains(" rps  p99 "),
        "progress without a terminal:\n{all}"
    );
}
