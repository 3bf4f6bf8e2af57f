//! `meshrig proxy` on real sockets on 127.0.0.1: a proxy child process in front of
//! `meshrig echo` backends (each named, so `x-meshrig-server` says which answered):
//! weighted splits, header routing, fault injection, retries, authorization, admin.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, TempDir, meshrig, spawn_echo};

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
    let ok = "istio_requests_total{reporter=\"source\",source_workload=\"client\",\
              destination_service=\"reviews.default.svc.cluster.local\",response_code=\"200\",\
              response_flags=\"-\"} 12\n";
    assert!(metrics.contains(ok), "{metrics}");
    let nc = "destination_service=\"nowhere.default.svc.cluster.local\",response_code=\"503\",\
              response_flags=\"NC\"} 3\n";
    assert!(metrics.contains(nc), "{metrics}");
    assert!(
        metrics.contains("istio_request_duration_milliseconds_count{reporter=\"source\",source_workload=\"client\",destination_service=\"reviews.default.svc.cluster.local\",response_code=\"200\",response_flags=\"-\"} 12\n"),
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
