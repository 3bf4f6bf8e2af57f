//! Tests of `serve` over real loopback sockets: TLS with ALPN, graceful shutdown.

use std::time::Instant;

use bytes::Bytes;
use http::{StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use rustls_pki_types::ServerName;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::*;

/// The workspace's shared test certificates (see `tests/data/README.md`).
fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(file)
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<ServeSummary, EchoConfigError>>,
}

async fn start(config: EchoConfig, tls: Option<Arc<rustls::ServerConfig>>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, config, tls, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

fn client_tls(alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&data("echo-ca.pem")).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn tls_get(addr: SocketAddr, alpn: &[u8], path: &str) -> (Version, StatusCode, Bytes) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = client_tls(alpn).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    let io = TokioIo::new(tls);
    let response = if alpn == b"h2" {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let uri = format!("https://localhost:{}{path}", addr.port());
        let req = Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(req).await.unwrap()
    };
    let (version, status) = (response.version(), response.status());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (version, status, body)
}

#[tokio::test]
async fn tls_negotiates_h2_and_http1_by_alpn() {
    let tls = tls_server_config(&data("echo-cert.pem"), &data("echo-key.pem")).unwrap();
    let server = start(EchoConfig::default(), Some(tls)).await;

    let (version, status, body) = tls_get(server.addr, b"h2", "/healthz").await;
    assert_eq!(
        (version, status, &body[..]),
        (Version::HTTP_2, StatusCode::OK, &b"ok"[..])
    );

    let (version, status, body) = tls_get(server.addr, b"http/1.1", "/?size=10").await;
    assert_eq!(
        (version, status, body.len()),
        (Version::HTTP_11, StatusCode::OK, 10)
    );

    server.stop.send(()).unwrap();
    let summary = server.task.await.unwrap().unwrap();
    assert_eq!(
        summary.stats.connections_total, 1,
        "/healthz alone is not counted"
    );
    assert_eq!(summary.unfinished_connections, 0);
}

#[test]
fn tls_config_errors_name_the_file() {
    let not_pem = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let err = tls_server_config(&not_pem, &data("echo-key.pem")).unwrap_err();
    assert!(matches!(err, TlsConfigError::Cert(_)), "{err:?}");
    assert!(err.to_string().contains("Cargo.toml"), "{err}");

    let err = tls_server_config(&data("echo-cert.pem"), &data("echo-cert.pem")).unwrap_err();
    assert!(matches!(err, TlsConfigError::Key(_)), "{err:?}");
    assert!(err.to_string().contains("echo-cert.pem"), "{err}");

    // The CA certificate with the leaf's key: both parse, but they are not a pair.
    let err = tls_server_config(&data("echo-ca.pem"), &data("echo-key.pem")).unwrap_err();
    assert!(matches!(err, TlsConfigError::Pair { .. }), "{err:?}");
}

/// Sends `GET path` on a fresh HTTP/1.1 connection; returns the status once the
/// whole response has arrived.
async fn http1_get(addr: SocketAddr, path: &str) -> Result<StatusCode, hyper::Error> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

/// Polls `/stats` until `in_flight` reaches `want` (bounded: fails after 5 s).
async fn wait_in_flight(addr: SocketAddr, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/stats").body(Empty::<Bytes>::new()).unwrap();
        let body = sender.send_request(req).await.unwrap().into_body();
        let text = body.collect().await.unwrap().to_bytes();
        if std::str::from_utf8(&text)
            .unwrap()
            .contains(&format!("\"in_flight\":{want},"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "in_flight never reached {want}: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let server = start(EchoConfig::default(), None).await;
    let request = tokio::spawn(http1_get(server.addr, "/?delay=300ms&status=202"));
    wait_in_flight(server.addr, 1).await;

    server.stop.send(()).unwrap();
    assert_eq!(request.await.unwrap().unwrap(), StatusCode::ACCEPTED);
    let summary = server.task.await.unwrap().unwrap();
    assert_eq!(summary.unfinished_connections, 0);
    assert_eq!(summary.stats.requests_total, 1);
    assert_eq!(summary.stats.in_flight, 0);
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn shutdown_gives_up_after_the_timeout() {
    let config = EchoConfig {
        shutdown_timeout: Duration::from_millis(50),
        ..EchoConfig::default()
    };
    let server = start(config, None).await;
    let request = tokio::spawn(http1_get(server.addr, "/?delay=1s"));
    wait_in_flight(server.addr, 1).await;

    server.stop.send(()).unwrap();
    let summary = server.task.await.unwrap().unwrap();
    assert_eq!(summary.unfinished_connections, 1);
    let outcome = request.await.unwrap();
    assert!(outcome.is_err(), "the abandoned request got {outcome:?}");
}
