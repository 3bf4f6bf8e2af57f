//! `meshrig control` and `meshrig proxy --control` on real sockets on 127.0.0.1: a
//! config push moves traffic mid-run without a failed request, the proxy keeps
//! routing with its last config when the control plane dies, and a rejected config
//! keeps the old version and is reported.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, TempDir, meshrig, read_json, spawn_echo, wait_until};

/// How long any one wait in these tests may take.
const LIMIT: Duration = Duration::from_secs(15);

/// A child process with its `NAME listening on ADDR` lines, killed when dropped.
struct Proc {
    child: Child,
    listeners: BTreeMap<String, SocketAddr>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Spawns `cmd` and reads stdout up to `ready`.
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn meshrig");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut listeners = BTreeMap::new();
        loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                other => {
                    let _ = child.kill();
                    panic!("meshrig stopped before `ready`: {other:?}");
                }
            };
            if line == "ready" {
                break;
            }
            let (name, addr) = line
                .split_once(" listening on ")
                .unwrap_or_else(|| panic!("unexpected line: {line:?}"));
            listeners.insert(name.to_owned(), addr.parse().expect("address"));
        }
        Proc { child, listeners }
    }

    fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }
}

/// One HTTP/1.1 request with `connection: close`: (status, headers, body).
fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &str,
) -> (u16, BTreeMap<String, String>, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read response");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Which echo answered a request for `reviews` through the proxy's outbound.
fn served_by(proxy: &Proc) -> String {
    let (status, headers, body) = request(proxy.addr("outbound"), "GET", "reviews", "/", "");
    assert_eq!(status, 200, "{body}");
    headers["x-meshrig-server"].clone()
}

fn status(control: &Proc) -> Value {
    let (code, _, body) = request(control.addr("control"), "GET", "control", "/v1/status", "");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
";

fn vs(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: reviews, namespace: default }}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{ host: reviews, subset: {subset} }}
"
    )
}

/// Two echo backends (v1, v2), a control plane over `dir` (a DestinationRule and a
/// VirtualService sending everything to v1), and a proxy subscribed to it.
struct Mesh {
    _backends: (Server, Server),
    control: Proc,
    proxy: Proc,
    dir: TempDir,
}

fn start_mesh(name: &str) -> Mesh {
    let v1 = spawn_echo(&["--name", "v1", "--threads", "1"]);
    let v2 = spawn_echo(&["--name", "v2", "--threads", "1"]);
    let dir = TempDir::new(name);
    std::fs::create_dir_all(dir.path("istio")).unwrap();
    std::fs::write(dir.path("istio/dr.yaml"), DR).unwrap();
    std::fs::write(dir.path("istio/vs.yaml"), vs("v1")).unwrap();
    let registry = serde_json::json!({ "services": [{ "name": "reviews", "instances": [
        { "address": v1.addr.to_string(), "labels": { "version": "v1" } },
        { "address": v2.addr.to_string(), "labels": { "version": "v2" } },
    ]}]});
    std::fs::write(dir.path("registry.json"), registry.to_string()).unwrap();
    let control = Proc::spawn(
        meshrig()
            .arg("control")
            .arg("--config")
            .arg(dir.path("istio"))
            .arg("--registry")
            .arg(dir.path("registry.json"))
            .args(["--listen", "127.0.0.1:0", "--poll-interval", "50ms"])
            .arg("--exit-on-stdin-eof"),
    );
    let proxy = Proc::spawn(
        meshrig()
            .arg("proxy")
            .arg("--control")
            .arg(format!("http://{}", control.addr("control")))
            .args(["--service", "client", "--proxy-id", "client-1"])
            .args(["--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--threads", "2", "--exit-on-stdin-eof"]),
    );
    Mesh {
        _backends: (v1, v2),
        control,
        proxy,
        dir,
    }
}

/// Waits until the proxy `client-1` ACKed `version` at the control plane.
fn wait_for_ack(control: &Proc, version: u64) {
    wait_until(
        LIMIT,
        &format!("the proxy to ACK version {version}"),
        || {
            status(control)["proxies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == "client-1" && p["acked_version"] == version)
        },
    );
}

#[test]
fn a_config_push_moves_traffic_mid_run_without_failed_requests() {
    let mesh = start_mesh("control-push");
    assert_eq!(served_by(&mesh.proxy), "v1");
    let out = mesh.dir.path("load.json");
    let mut load = meshrig()
        .arg("load")
        .args([
            "--qps",
            "1000",
            "-t",
            "4s",
            "-c",
            "16",
            "-H",
            "Host: reviews",
        ])
        .args(["--group-by-header", "x-meshrig-server", "--quiet", "--json"])
        .arg(&out)
        .arg(format!("http://{}/", mesh.proxy.addr("outbound")))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn meshrig load");
    // Push once v1 has served a good share of the run.
    let v1 = mesh._backends.0.addr;
    wait_until(LIMIT, "traffic at v1", || {
        let (_, _, body) = request(v1, "GET", "echo", "/stats", "");
        let stats: Value = serde_json::from_str(&body).unwrap();
        stats["requests_total"].as_u64().unwrap() > 800
    });
    let (code, _, body) = request(
        mesh.control.addr("control"),
        "POST",
        "control",
        "/v1/config?name=reviews-v2",
        &vs("v2"),
    );
    assert_eq!(code, 200, "{body}");
    let pushed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pushed["version"], 2, "{body}");
    wait_for_ack(&mesh.control, 2);

    let started = Instant::now();
    let exit = loop {
        if let Some(s) = load.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < LIMIT, "meshrig load did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    let r = read_json(&out);
    assert!(exit.success(), "load failed: {r}");
    let n = |p: &str| r.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    assert_eq!(r["rps_target"], 1000.0, "{r}");
    assert!(n("/requests_total") >= 2_000, "{r}");
    assert_eq!(n("/errors_total"), 0, "{r}");
    assert_eq!(n("/status_codes/200"), n("/requests_total"), "{r}");
    let (by_v1, by_v2) = (
        n("/groups/x-meshrig-server/v1"),
        n("/groups/x-meshrig-server/v2"),
    );
    assert!(by_v1 > 0 && by_v2 > 0, "both versions served: {r}");
    assert_eq!(by_v1 + by_v2, n("/requests_total"), "{r}");
    assert_eq!(served_by(&mesh.proxy), "v2");

    // The push is measured: one proxy, propagated, nothing NACKed.
    let s = status(&mesh.control);
    let p = &s["propagation"][0];
    assert_eq!(
        (p["version"].as_u64(), p["proxies"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    assert!(p["p100_ms"].as_f64().is_some(), "{s}");
    assert_eq!(s["nacks_total"], 0, "{s}");
    let (_, _, metrics) = request(mesh.control.addr("control"), "GET", "c", "/metrics", "");
    assert!(
        metrics.contains("meshrig_control_config_version 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshrig_control_propagation_seconds{version=\"2\",quantile=\"1\"}"),
        "{metrics}"
    );
    // The proxy's /config_dump says which version it runs.
    let (_, headers, dump) = request(mesh.proxy.addr("admin"), "GET", "a", "/config_dump", "");
    assert_eq!(headers["x-meshrig-config-version"], "2");
    let dump: Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["version"], 2);
}

#[test]
fn the_proxy_keeps_routing_when_the_control_plane_dies() {
    let mut mesh = start_mesh("control-down");
    std::fs::write(mesh.dir.path("istio/vs.yaml"), vs("v2")).unwrap();
    wait_for_ack(&mesh.control, 2);
    mesh.control.child.kill().unwrap();
    mesh.control.child.wait().unwrap();
    for _ in 0..50 {
        assert_eq!(served_by(&mesh.proxy), "v2");
    }
    let (code, headers, _) = request(mesh.proxy.addr("admin"), "GET", "a", "/ready", "");
    assert_eq!(code, 200);
    assert!(headers.contains_key("content-type"));
}

#[test]
fn a_rejected_config_keeps_the_old_version_and_is_reported() {
    let mesh = start_mesh("control-reject");
    // Bad YAML over HTTP: 400 with the finding, nothing published.
    let (code, _, body) = request(
        mesh.control.addr("control"),
        "POST",
        "control",
        "/v1/config?name=broken",
        "kind: VirtualService\nspec: [unclosed\n",
    );
    assert_eq!(code, 400, "{body}");
    let rejection: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rejection["kept_version"], 1, "{body}");
    assert!(
        rejection["errors"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("broken:") && e.contains("invalid YAML")),
        "{body}"
    );
    // A bad file: rejected by the watcher, reported in the status.
    std::fs::write(
        mesh.dir.path("istio/vs.yaml"),
        vs("v2").replace("hosts: [reviews]", "hosts: [reviews"),
    )
    .unwrap();
    wait_until(LIMIT, "the file to be rejected", || {
        status(&mesh.control)["rejections_total"] == 2
    });
    let s = status(&mesh.control);
    assert_eq!(s["version"], 1, "{s}");
    assert_eq!(s["last_rejection"]["origin"], "files", "{s}");
    let error = s["last_rejection"]["errors"][0].as_str().unwrap();
    assert!(error.contains("vs.yaml:"), "{s}");
    assert_eq!(served_by(&mesh.proxy), "v1");
    // Fixing the file publishes it.
    std::fs::write(mesh.dir.path("istio/vs.yaml"), vs("v2")).unwrap();
    wait_for_ack(&mesh.control, 2);
    assert_eq!(served_by(&mesh.proxy), "v2");
}

#[test]
fn stdin_eof_stops_control_and_proxy() {
    let mut mesh = start_mesh("control-eof");
    drop(mesh.proxy.child.stdin.take());
    drop(mesh.control.child.stdin.take());
    for (name, child) in [
        ("proxy", &mut mesh.proxy.child),
        ("control", &mut mesh.control.child),
    ] {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < LIMIT,
                "{name} did not exit on stdin EOF"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "{name}: {status}");
    }
}
