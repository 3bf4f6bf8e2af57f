//! `meshrig proxy` on real sockets on 127.0.0.1: a proxy child process in front of
//! `meshrig echo` backends (each named, so `x-meshrig-server` says which answered):
//! weighted splits, header routing, fault injection, retries, authorization, admin,
//! the access log, trace headers, HTTP/2, circuit breaking and mirroring.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, TempDir, meshrig, spawn_echo, wait_until};

/// A running `meshrig proxy`, killed when dropped.
struct ProxyProc {
    child: Child,
    listeners: BTreeMap<String, SocketAddr>,
    _dir: TempDir,
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyProc {
    fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }
}

/// Starts `meshrig proxy` with `istio` as its configuration and `registry` (JSON) as
/// its registry, outbound and admin on free ports, plus `extra` flags; waits for
/// `ready`.
fn spawn_proxy(istio: &str, registry: &str, extra: &[&str]) -> ProxyProc {
    let dir = TempDir::new("proxy");
    let config = dir.path("istio.yaml");
    let reg = dir.path("registry.json");
    std::fs::write(&config, istio).unwrap();
    std::fs::write(&reg, registry).unwrap();
    let mut child = meshrig()
        .arg("proxy")
        .arg("--config")
        .arg(&config)
        .arg("--registry")
        .arg(&reg)
        .args(["--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--seed", "7", "--threads", "2"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn meshrig proxy");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut listeners = BTreeMap::new();
    loop {
        let line = match lines.next() {
            Some(Ok(l)) => l,
            other => {
                let _ = child.kill();
                panic!("meshrig proxy stopped before `ready`: {other:?}");
            }
        };
        if line == "ready" {
            break;
        }
        let (name, addr) = line
            .split_once(" listening on ")
            .unwrap_or_else(|| panic!("unexpected line from meshrig proxy: {line:?}"));
        listeners.insert(name.to_owned(), addr.parse().expect("address"));
    }
    ProxyProc {
        child,
        listeners,
        _dir: dir,
    }
}

/// A response as the tests read it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.1 GET with `Host: host` and `connection: close`.
fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
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
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A registry of one service with the given `(address, version)` instances.
fn registry(service: &str, instances: &[(SocketAddr, &str)]) -> String {
    let instances: Vec<Value> = instances
        .iter()
        .map(|(a, v)| {
            serde_json::json!({
                "address": a.to_string(),
                "labels": { "app": service, "version": v },
                "zone": "a",
            })
        })
        .collect();
    serde_json::json!({ "services": [{ "name": service, "instances": instances }] }).to_string()
}

/// An echo backend whose responses say `x-meshrig-server: NAME`.
fn echo(name: &str) -> Server {
    spawn_echo(&["--name", name, "--threads", "1"])
}

const REVIEWS_SUBSETS: &str = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets:
  - name: v1
    labels: { version: v1 }
  - name: v2
    labels: { version: v2 }
";

#[test]
fn weighted_split_follows_the_weights() {
    let (v1, v2) = (echo("v1"), echo("v2"));
    let istio = format!(
        "{REVIEWS_SUBSETS}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: reviews, namespace: default }}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{ host: reviews, subset: v1 }}
      weight: 80
    - destination: {{ host: reviews, subset: v2 }}
      weight: 20
"
    );
    let reg = registry("reviews", &[(v1.addr, "v1"), (v2.addr, "v2")]);
    let proxy = spawn_proxy(&istio, &reg, &["--service", "client"]);
    let mut counts = BTreeMap::new();
    const N: usize = 500;
    for _ in 0..N {
        let r = get(proxy.addr("outbound"), "reviews", "/", &[]);
        assert_eq!(r.status, 200, "{r:?}");
        let server = r.header("x-meshrig-server").expect("echo names itself");
        *counts.entry(server.to_owned()).or_insert(0usize) += 1;
    }
    let share = |v: &str| counts.get(v).copied().unwrap_or(0) as f64 * 100.0 / N as f64;
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!((share("v1") - 80.0).abs() <= 7.0, "{counts:?}");
    assert!((share("v2") - 20.0).abs() <= 7.0, "{counts:?}");
}

#[test]
fn header_match_routes_jason_to_v2() {
    let (v1, v2) = (echo("v1"), echo("v2"));
    let istio = format!(
        "{REVIEWS_SUBSETS}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: reviews, namespace: default }}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {{ exact: jason }}
    route:
    - destination: {{ host: reviews, subset: v2 }}
  - route:
    - destination: {{ host: reviews, subset: v1 }}
"
    );
    let reg = registry("reviews", &[(v1.addr, "v1"), (v2.addr, "v2")]);
    let proxy = spawn_proxy(&istio, &reg, &["--service", "productpage"]);
    let out = proxy.addr("outbound");
    for _ in 0..20 {
        let r = get(out, "reviews", "/reviews/0", &[("end-user", "jason")]);
        assert_eq!((r.status, r.header("x-meshrig-server")), (200, Some("v2")));
        let r = get(out, "reviews.default.svc.cluster.local", "/reviews/0", &[]);
        assert_eq!((r.status, r.header("x-meshrig-server")), (200, Some("v1")));
        let r = get(out, "reviews", "/", &[("end-user", "json")]);
        assert_eq!((r.status, r.header("x-meshrig-server")), (200, Some("v1")));
    }
}

#[test]
fn fault_abort_and_delay_are_injected() {
    let backend = echo("ratings");
    let istio = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings, namespace: default }
spec:
  hosts: [ratings]
  http:
  - fault:
      abort: { httpStatus: 418, percentage: { value: 100 } }
    route:
    - destination: { host: ratings }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: details, namespace: default }
spec:
  hosts: [details]
  http:
  - fault:
      delay: { fixedDelay: 200ms, percentage: { value: 100 } }
    route:
    - destination: { host: details }
";
    let reg = serde_json::json!({ "services": [
        { "name": "ratings", "instances": [{ "address": backend.addr.to_string() }] },
        { "name": "details", "instances": [{ "address": backend.addr.to_string() }] },
    ]})
    .to_string();
    let proxy = spawn_proxy(istio, &reg, &["--service", "client"]);
    let out = proxy.addr("outbound");
    for _ in 0..20 {
        let r = get(out, "ratings", "/", &[]);
        assert_eq!(r.status, 418, "{r:?}");
        assert_eq!(r.header("x-meshrig-flags"), Some("FI"));
        assert_eq!(
            r.header("x-meshrig-server"),
            None,
            "aborted before the backend"
        );
    }
    for _ in 0..3 {
        let start = Instant::now();
        let r = get(out, "details", "/", &[]);
        let took = start.elapsed();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("x-meshrig-server"), Some("ratings"));
        assert_eq!(r.header("x-meshrig-flags"), Some("DI"));
        assert!(took >= Duration::from_millis(200), "took {took:?}");
    }
}

/// A backend that answers every request `503` and closes; counts requests.
fn always_503() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = conn.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    (addr, hits)
}

#[test]
fn retries_hide_a_failing_instance() {
    let healthy = echo("healthy");
    let (broken, broken_hits) = always_503();
    let istio = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: flaky, namespace: default }
spec:
  hosts: [flaky]
  http:
  - route:
    - destination: { host: flaky }
    retries: { attempts: 3, retryOn: 5xx }
";
    let reg = registry("flaky", &[(broken, "v1"), (healthy.addr, "v1")]);
    let proxy = spawn_proxy(istio, &reg, &["--service", "client"]);
    for i in 0..40 {
        let r = get(proxy.addr("outbound"), "flaky", "/", &[]);
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.header("x-meshrig-server"), Some("healthy"));
    }
    assert!(
        broken_hits.load(Ordering::SeqCst) > 0,
        "the failing instance was never tried: the test proves nothing"
    );
    // Without retries the same split shows the failures.
    let istio_no_retries = istio.replace(
        "retries: { attempts: 3, retryOn: 5xx }",
        "retries: { attempts: 0 }",
    );
    let proxy = spawn_proxy(&istio_no_retries, &reg, &["--service", "client"]);
    let failures = (0..40)
        .filter(|_| get(proxy.addr("outbound"), "flaky", "/", &[]).status == 503)
        .count();
    assert!(failures > 0, "no 503 without retries");
}

#[test]
fn inbound_authorization_denies_a_path() {
    let app = echo("productpage");
    let istio = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: default }
spec:
  selector: { matchLabels: { app: productpage } }
  action: DENY
  rules:
  - to:
    - operation: { paths: [\"/admin*\"] }
";
    let app_addr = app.addr.to_string();
    let proxy = spawn_proxy(
        istio,
        r#"{"services": []}"#,
        &[
            "--service",
            "productpage",
            "--label",
            "app=productpage,version=v1",
            "--inbound",
            "127.0.0.1:0",
            "--app",
            &app_addr,
        ],
    );
    let inbound = proxy.addr("inbound");
    for path in ["/admin", "/admin/users?x=1"] {
        let r = get(inbound, "productpage", path, &[]);
        assert_eq!(
            (r.status, r.body.as_str()),
            (403, "RBAC: access denied"),
            "{path}"
        );
        assert_eq!(r.header("x-meshrig-server"), None);
    }
    for path in ["/", "/productpage", "/api/admin"] {
        let r = get(inbound, "productpage", path, &[]);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("x-meshrig-server"), Some("productpage"));
    }
}

#[test]
fn admin_ready_config_dump_and_metrics() {
    let backend = echo("reviews-v1");
    let reg = registry("reviews", &[(backend.addr, "v1")]);
    let proxy = spawn_proxy("", &reg, &["--service", "client", "--label", "app=client"]);
    let admin = proxy.addr("admin");
    let r = get(admin, "admin", "/ready", &[]);
    assert_eq!(r.status, 200);
    let r = get(admin, "admin", "/config_dump", &[]);
    assert_eq!(r.status, 200);
    let dump: Value = serde_json::from_str(&r.body).expect("config_dump is JSON");
    assert_eq!(dump["proxy"]["workload"], "client", "{dump}");
    let clusters = dump["clusters"].as_object().expect("clusters");
    let reviews = &clusters["reviews.default.svc.cluster.local"];
    assert_eq!(reviews[0]["address"], backend.addr.to_string());

    let out = proxy.addr("outbound");
    for _ in 0..12 {
        assert_eq!(get(out, "reviews", "/", &[]).status, 200);
    }
    for _ in 0..3 {
        let r = get(out, "nowhere", "/", &[]);
        assert_eq!((r.status, r.header("x-meshrig-flags")), (503, Some("NC")));
    }
    let metrics = get(admin, "admin", "/metrics", &[]).body;
    check_exposition(&metrics);
    let ok = "istio_requests_total{reporter=\"source\",source_workload=\"client\",\
              source_workload_namespace=\"default\",source_principal=\"unknown\",\
              destination_workload=\"reviews\",\
              destination_service=\"reviews.default.svc.cluster.local\",\
              destination_service_name=\"reviews\",destination_version=\"v1\",\
              response_code=\"200\",response_flags=\"-\",connection_security_policy=\"none\",\
              request_protocol=\"http\"} 12\n";
    assert!(metrics.contains(ok), "{metrics}");
    let nc = "destination_service=\"nowhere.default.svc.cluster.local\",\
              destination_service_name=\"nowhere\",destination_version=\"unknown\",\
              response_code=\"503\",response_flags=\"NC\",";
    assert!(metrics.contains(nc), "{metrics}");
    for family in [
        "istio_request_duration_milliseconds_count{",
        "istio_request_bytes_count{",
        "istio_response_bytes_count{",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(family)
                && l.contains("response_code=\"200\"")
                && l.ends_with(" 12")),
            "{family}: {metrics}"
        );
    }
    // 12 + 3 requests, each on its own connection (connection: close).
    let opened = metrics
        .lines()
        .find(|l| l.starts_with("istio_tcp_connections_opened_total{reporter=\"source\""))
        .expect("tcp opened counter");
    let n: u64 = opened.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 15, "{opened}");
    assert!(
        metrics.contains("istio_tcp_received_bytes_total{"),
        "{metrics}"
    );
    assert_eq!(get(admin, "admin", "/nope", &[]).status, 404);
}

#[test]
fn malformed_requests_get_400_and_the_proxy_survives() {
    let proxy = spawn_proxy("", r#"{"services": []}"#, &["--service", "client"]);
    let out = proxy.addr("outbound");
    let mut s = TcpStream::connect(out).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400"), "{text:?}");
    let r = get(proxy.addr("admin"), "admin", "/ready", &[]);
    assert_eq!(r.status, 200);
}

/// One HTTP/1.1 POST of `body` with `Host: host` and `connection: close`; `None` when
/// the connection broke before a response (a proxy may answer, and close, before it
/// has read a large body).
fn post(addr: SocketAddr, host: &str, path: &str, body: &[u8]) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

#[test]
fn request_bodies_are_replayed_on_retry_and_large_ones_streamed() {
    let healthy = echo("healthy");
    let (broken, broken_hits) = always_503();
    let istio = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: flaky, namespace: default }
spec:
  hosts: [flaky]
  http:
  - route:
    - destination: { host: flaky }
    retries: { attempts: 3, retryOn: 5xx }
";
    let reg = registry("flaky", &[(broken, "v1"), (healthy.addr, "v1")]);
    let proxy = spawn_proxy(istio, &reg, &["--service", "client"]);
    let out = proxy.addr("outbound");
    let small: Vec<u8> = (0..4096u32).map(|i| b'a' + (i % 26) as u8).collect();
    for i in 0..20 {
        let r = post(out, "flaky", "/", &small).expect("a response");
        assert_eq!(r.status, 200, "request {i}: {:?}", r.headers);
        assert_eq!(
            r.body.as_bytes(),
            &small[..],
            "request {i}: body replayed whole"
        );
    }
    assert!(broken_hits.load(Ordering::SeqCst) > 0, "no retry happened");
    // Above the buffering limit the body is streamed once: it reaches the backend
    // whole, or (on the broken instance, with retries off) a 503 comes back, or the
    // connection breaks while the body is still being sent.
    let large: Vec<u8> = (0..200 * 1024u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut whole = 0;
    for _ in 0..10 {
        let Some(r) = post(out, "flaky", "/", &large) else {
            continue;
        };
        match r.status {
            200 => {
                assert_eq!(r.body.len(), large.len());
                assert!(r.body.as_bytes() == &large[..]);
                whole += 1;
            }
            503 => assert_eq!(r.header("x-meshrig-server"), None),
            other => panic!("unexpected status {other}: {:?}", r.headers),
        }
    }
    assert!(whole > 0, "no large body got through");
}

#[test]
fn sigterm_stops_the_proxy() {
    let mut proxy = spawn_proxy("", r#"{"services": []}"#, &["--service", "client"]);
    let pid = proxy.child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every line of a Prometheus text exposition is `# HELP`, `# TYPE` or a sample
/// `name{labels} value`; histogram buckets are cumulative and end at `+Inf` = count.
fn check_exposition(text: &str) {
    let mut last_bucket: Option<(String, f64)> = None;
    let mut inf: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let kind = words.next().unwrap();
            assert!(kind == "HELP" || kind == "TYPE", "{line}");
            assert!(words.next().is_some_and(|n| !n.is_empty()), "{line}");
            if kind == "TYPE" {
                let t = words.next().unwrap_or("");
                assert!(["counter", "histogram", "gauge"].contains(&t), "{line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "name: {line}"
        );
        let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
        // label="value" pairs, values with \\ \" \n escapes.
        let mut rest = labels;
        let mut le = None;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
            assert!(
                key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "label {key:?}: {line}"
            );
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated value: {line}"));
            if key == "le" {
                le = Some(after[..end].to_owned());
            }
            rest = after[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&after[end + 1..]);
        }
        if name.ends_with("_bucket") {
            let le = le.unwrap_or_else(|| panic!("bucket without le: {line}"));
            let key = series.replace(&format!("le=\"{le}\""), "");
            if let Some((prev_key, prev)) = &last_bucket
                && *prev_key == key
            {
                assert!(value >= *prev, "buckets not cumulative at {line}");
            }
            if le == "+Inf" {
                inf.insert(key.replace("_bucket{", "_count{"), value);
                last_bucket = None;
            } else {
                last_bucket = Some((key, value));
            }
        } else if name.ends_with("_count") {
            let key = series.replace("}", ",}");
            assert_eq!(inf.get(&key), Some(&value), "+Inf bucket != count: {line}");
        }
    }
}

/// A test's access log file, read as JSON lines.
fn log_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn access_log_has_a_json_line_per_request() {
    let backend = echo("reviews-v1");
    let reg = registry("reviews", &[(backend.addr, "v1")]);
    let dir = TempDir::new("access-log");
    let log = dir.path("access.log");
    let log_arg = log.display().to_string();
    let proxy = spawn_proxy("", &reg, &["--service", "client", "--access-log", &log_arg]);
    let out = proxy.addr("outbound");
    let r = get(out, "reviews", "/a?x=1", &[("x-request-id", "req-42")]);
    assert_eq!(r.status, 200);
    let body = r.body.len() as u64;
    assert_eq!(get(out, "nowhere", "/b", &[]).status, 503);
    wait_until(Duration::from_secs(10), "two access log lines", || {
        log_lines(&log).len() >= 2
    });
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let ok = &lines[0];
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/a?x=1");
    assert_eq!(ok["protocol"], "HTTP/1.1");
    assert_eq!(ok["response_code"], 200);
    assert_eq!(ok["response_flags"], "-");
    assert_eq!(ok["x_request_id"], "req-42");
    assert_eq!(ok["authority"], "reviews");
    assert_eq!(ok["reporter"], "source");
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["bytes_sent"], body, "{ok}");
    assert_eq!(ok["upstream_host"], backend.addr.to_string());
    assert_eq!(
        ok["upstream_cluster"],
        "outbound|80||reviews.default.svc.cluster.local"
    );
    assert!(ok["upstream_service_time"].is_u64(), "{ok}");
    assert!(ok["start_time"].as_str().unwrap().ends_with('Z'), "{ok}");
    assert!(
        ok["downstream_remote_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let nc = &lines[1];
    assert_eq!(nc["response_code"], 503);
    assert_eq!(nc["response_flags"], "NC");
    assert_eq!(nc["attempts"], 0);
    assert!(nc["upstream_host"].is_null());
    assert_eq!(nc["x_request_id"].as_str().unwrap().len(), 36, "{nc}");
}

/// The `name: value` lines of an echo `/debug` body.
fn debug_headers(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn trace_headers_continue_the_incoming_trace() {
    let backend = echo("reviews-v1");
    let reg = registry("reviews", &[(backend.addr, "v1")]);
    let proxy = spawn_proxy("", &reg, &["--service", "client"]);
    let out = proxy.addr("outbound");
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get(
        out,
        "reviews",
        "/debug",
        &[
            ("traceparent", incoming),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let seen = debug_headers(&r.body);
    let tp: Vec<&str> = seen["traceparent"].split('-').collect();
    assert_eq!(tp[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(tp[2], "00f067aa0ba902b7", "a new span");
    assert_eq!(seen["x-b3-parentspanid"], "00f067aa0ba902b7");
    assert_eq!(seen["x-b3-spanid"], tp[2]);
    assert_eq!(seen["tracestate"], "congo=t61rcWkgMzE");
    assert_eq!(seen["x-request-id"].len(), 36, "a request id was made");
    // Without a trace (or with a malformed one) the proxy starts one.
    for extra in [&[][..], &[("traceparent", "ff-bad")][..]] {
        let r = get(out, "reviews", "/debug", extra);
        let seen = debug_headers(&r.body);
        let tp: Vec<&str> = seen["traceparent"].split('-').collect();
        assert_eq!((tp.len(), tp[0], tp[1].len()), (4, "00", 32), "{seen:?}");
        assert!(!seen.contains_key("x-b3-parentspanid"), "{seen:?}");
        assert_eq!(seen["x-b3-traceid"], tp[1]);
    }
    // A request id is kept.
    let r = get(out, "reviews", "/debug", &[("x-request-id", "abc")]);
    assert_eq!(debug_headers(&r.body)["x-request-id"], "abc");
}

#[test]
fn h2c_requests_go_through_and_upstream_as_h2() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let backend = echo("reviews-v1");
    let reg = registry("reviews", &[(backend.addr, "v1")]);
    let proxy = spawn_proxy("", &reg, &["--service", "client"]);
    let out = proxy.addr("outbound");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let run = async {
            let tcp = tokio::net::TcpStream::connect(out).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .expect("h2c handshake with the proxy");
            tokio::spawn(conn);
            // Above the retry replay limit (64 KiB) the body is streamed, not buffered.
            let large: Vec<u8> = (0..300 * 1024u32).map(|i| b'a' + (i % 26) as u8).collect();
            for path in ["/debug", "/"] {
                let body = if path == "/" {
                    bytes::Bytes::from(large.clone())
                } else {
                    bytes::Bytes::from_static(b"hello h2")
                };
                let request = http::Request::builder()
                    .method("POST")
                    .uri(format!("http://reviews{path}"))
                    .version(http::Version::HTTP_2)
                    .body(Full::new(body))
                    .unwrap();
                let response = sender.send_request(request).await.expect("response");
                assert_eq!(response.status(), 200);
                assert_eq!(response.version(), http::Version::HTTP_2);
                assert_eq!(response.headers()["x-meshrig-server"], "reviews-v1");
                let body = response.into_body().collect().await.unwrap().to_bytes();
                if path == "/debug" {
                    let body = String::from_utf8_lossy(&body);
                    assert!(body.contains("version: HTTP/2.0"), "upstream h2: {body}");
                } else {
                    assert!(body == large, "the large body came back whole");
                }
            }
            // A large response streams back too.
            let request = http::Request::builder()
                .uri("http://reviews/?size=2MiB")
                .version(http::Version::HTTP_2)
                .body(Full::new(bytes::Bytes::new()))
                .unwrap();
            let response = sender.send_request(request).await.expect("response");
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 2 * 1024 * 1024);
        };
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("h2c exchange within 20 s");
    });
}

#[test]
fn connection_pool_limits_answer_503_uo() {
    let backend = echo("slow");
    let istio = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: slow, namespace: default }
spec:
  host: slow
  trafficPolicy:
    connectionPool:
      tcp: { maxConnections: 1 }
      http: { http1MaxPendingRequests: 1 }
";
    let reg = registry("slow", &[(backend.addr, "v1")]);
    let proxy = spawn_proxy(istio, &reg, &["--service", "client"]);
    let out = proxy.addr("outbound");
    // One request in flight on the one connection, one pending: the rest overflow.
    const N: usize = 6;
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|_| s.spawn(move || get(out, "slow", "/?delay=1s", &[])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let uo: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == 503 && r.header("x-meshrig-flags") == Some("UO"))
        .collect();
    assert!(ok >= 1, "{replies:?}");
    assert!(ok <= 2, "more than the limits let through: {replies:?}");
    assert_eq!(ok + uo.len(), N, "{replies:?}");
    assert!(uo.iter().all(|r| r.header("x-meshrig-server").is_none()));
    // Once the slow requests are done the pool admits again.
    assert_eq!(get(out, "slow", "/", &[]).status, 200);
}

#[test]
fn mirroring_copies_requests_to_v2_and_the_client_sees_v1() {
    let (v1, v2) = (echo("v1"), echo("v2"));
    let istio = format!(
        "{REVIEWS_SUBSETS}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: reviews, namespace: default }}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{ host: reviews, subset: v1 }}
    mirror: {{ host: reviews, subset: v2 }}
    mirrorPercentage: {{ value: 100 }}
"
    );
    let reg = registry("reviews", &[(v1.addr, "v1"), (v2.addr, "v2")]);
    let proxy = spawn_proxy(&istio, &reg, &["--service", "client"]);
    const N: u64 = 10;
    for _ in 0..N {
        let r = get(proxy.addr("outbound"), "reviews", "/", &[]);
        assert_eq!((r.status, r.header("x-meshrig-server")), (200, Some("v1")));
    }
    let requests = |s: &Server| -> u64 {
        let r = get(s.addr, "echo", "/stats", &[]);
        let v: Value = serde_json::from_str(&r.body).expect("stats JSON");
        v["requests_total"].as_u64().unwrap()
    };
    wait_until(Duration::from_secs(10), "v2 to get every shadow", || {
        requests(&v2) == N
    });
    assert_eq!(requests(&v1), N);
}
