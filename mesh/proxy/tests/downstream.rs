//! The downstream limits on real sockets (127.0.0.1): garbage, oversized and too many
//! headers, and slowloris clients get `400`/`431` or a closed connection within a
//! deadline, and the proxy keeps serving. The proxy runs in-process with a short
//! header read timeout ([`ServerLimits`]) so the slow cases end quickly.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_core::Locality;
use mesh_core::compile::{ProxyId, Registry, snapshot};
use mesh_core::config::ConfigSet;
use mesh_proxy::server::ServerLimits;
use mesh_proxy::{Listeners, Mesh, Proxy};

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(300);

/// Starts a proxy with an outbound listener and no services; returns its address.
fn start_proxy() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (set, _) = ConfigSet::load(&[]);
            let snap = snapshot(
                &set,
                &Registry::default(),
                &ProxyId::new("client", "default"),
                1,
            );
            let mesh = Arc::new(Mesh::new(set, snap, Locality::default(), 1));
            let listeners = Listeners {
                outbound: Some("127.0.0.1:0".parse().unwrap()),
                ..Default::default()
            };
            let proxy = Proxy::bind(mesh, &listeners)
                .await
                .unwrap()
                .with_limits(ServerLimits {
                    max_header_bytes: 16 * 1024,
                    max_headers: 50,
                    header_read_timeout: HEADER_READ_TIMEOUT,
                });
            tx.send(proxy.local_addrs().0.unwrap()).unwrap();
            proxy.serve(std::future::pending()).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the proxy listens")
}

/// Writes `bytes`, then reads until the peer closes (or 5 s pass: a failure).
/// Returns what was read and how long the close took.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    // The proxy may close while we are still writing an oversized head.
    let _ = s.write_all(bytes);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "no close within 5 s ({e}); read {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    (String::from_utf8_lossy(&buf).into_owned(), start.elapsed())
}

fn status(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

#[test]
fn bad_input_gets_400_431_or_a_close_and_the_proxy_survives() {
    let addr = start_proxy();
    let (r, _) = exchange(addr, b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(status(&r), Some(400), "{r:?}");
    let (r, _) = exchange(addr, b"GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n");
    assert_eq!(status(&r), Some(400), "{r:?}");
    let (r, _) = exchange(addr, b"\x00\xff\xfe\r\n\r\n");
    assert_eq!(status(&r), Some(400), "{r:?}");

    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (r, _) = exchange(addr, big.as_bytes());
    assert!(r.is_empty() || status(&r) == Some(431), "{r:?}");

    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..80 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (r, _) = exchange(addr, many.as_bytes());
    assert_eq!(status(&r), Some(431), "{r:?}");

    // Still serving: a well-formed request to an unknown service is a 503 NC.
    let (r, _) = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: nowhere\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(status(&r), Some(503), "{r:?}");
    assert!(
        r.to_ascii_lowercase().contains("x-meshrig-flags: nc"),
        "{r:?}"
    );
}

#[test]
fn slowloris_clients_are_cut_off_at_the_header_read_timeout() {
    let addr = start_proxy();
    // Half a request head, never finished.
    let (r, took) = exchange(addr, b"GET / HTTP/1.1\r\nHost: a\r\nx-slow: ");
    assert!(!r.starts_with("HTTP/1.1 2"), "{r:?}");
    assert!(
        took >= HEADER_READ_TIMEOUT,
        "closed before the timeout: {took:?}"
    );
    // Half of the HTTP/2 preface, never finished.
    let (r, took) = exchange(addr, b"PRI * HTTP/2.0\r\n");
    assert!(r.is_empty(), "{r:?}");
    assert!(
        took >= HEADER_READ_TIMEOUT,
        "closed before the timeout: {took:?}"
    );
    // Nothing at all.
    let (_, took) = exchange(addr, b"");
    assert!(took >= HEADER_READ_TIMEOUT, "{took:?}");

    // A client trickling one header byte at a time is cut off too, though each byte
    // arrives well within the timeout.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"x").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "a trickling client kept its connection for 5 s");
}
