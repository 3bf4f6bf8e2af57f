//! `meshrig echo` over real sockets on 127.0.0.1: echo, the Fortio-compatible query
//! parameters, reserved paths, HTTP/2 (h2c and TLS), flags, and shutdown.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpStream;

use crate::support::{meshrig, run_with_limit, spawn_echo};

fn data(file: &str) -> String {
    format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

/// Sends one request on a fresh HTTP/1.1 connection; returns the whole response.
async fn send_h1(addr: SocketAddr, mut req: Request<Full<Bytes>>) -> Response<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    req.headers_mut()
        .insert("host", addr.to_string().parse().unwrap());
    let response = sender.send_request(req).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Response::from_parts(parts, body)
}

/// An HTTP/2 (h2c, prior knowledge) connection.
async fn h2_connect(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    sender
}

async fn send_h2(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
    body: &'static str,
) -> Response<Bytes> {
    let req = Request::post(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = sender.send_request(req).await.expect("h2 response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("h2 body").to_bytes();
    Response::from_parts(parts, body)
}

async fn stats(addr: SocketAddr) -> Value {
    let response = send_h1(addr, get("/stats")).await;
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_slice(response.body()).expect("/stats is JSON")
}

/// Polls `/stats` until `in_flight` is `want`; fails after 10 s.
async fn wait_in_flight(addr: SocketAddr, want: u64) {
    let start = Instant::now();
    loop {
        let now = stats(addr).await;
        if now["in_flight"].as_u64() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "in_flight never reached {want}: {now}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn text(response: &Response<Bytes>) -> &str {
    std::str::from_utf8(response.body()).expect("UTF-8 body")
}

// === echo and query parameters ===

#[tokio::test]
async fn echoes_the_body_and_request_headers() {
    let echo = spawn_echo(&[]);
    let req = Request::post("/any/path")
        .header("x-trace", "abc-123")
        .body(Full::new(Bytes::from_static(b"hello meshrig")))
        .unwrap();
    let response = send_h1(echo.addr, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-trace"], "abc-123");
    assert_eq!(response.headers()["content-length"], "13");
    assert!(
        !response.headers().contains_key("host"),
        "host is not reflected"
    );
    assert_eq!(response.body(), "hello meshrig");
}

#[tokio::test]
async fn echoes_a_large_body_whole_and_refuses_one_over_max_size() {
    let echo = spawn_echo(&["--max-size", "1MiB"]);
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let req = Request::put("/")
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let response = send_h1(echo.addr, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body().as_ref(), &big[..]);

    let too_big = Request::put("/")
        .body(Full::new(Bytes::from(vec![b'x'; (1 << 20) + 1])))
        .unwrap();
    let response = send_h1(echo.addr, too_big).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        text(&response).contains("--max-size"),
        "{}",
        text(&response)
    );
}

#[tokio::test]
async fn status_parameter_sets_the_status() {
    let echo = spawn_echo(&[]);
    let response = send_h1(echo.addr, get("/?status=503")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn header_parameter_sets_response_headers() {
    let echo = spawn_echo(&[]);
    let response = send_h1(echo.addr, get("/?header=X-A:1&header=X-B:two%20words")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-a"], "1");
    assert_eq!(response.headers()["x-b"], "two words");
}

#[tokio::test]
async fn delay_parameter_delays_the_response() {
    let echo = spawn_echo(&[]);
    let start = Instant::now();
    let response = send_h1(echo.addr, get("/?delay=50ms")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    assert!(!response.headers().contains_key("x-meshrig-delay-capped"));
}

#[tokio::test]
async fn delay_over_max_delay_is_capped_and_says_so() {
    let echo = spawn_echo(&["--max-delay", "100ms"]);
    let start = Instant::now();
    let response = send_h1(echo.addr, get("/?delay=30s")).await;
    let took = start.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-meshrig-delay-capped"], "true");
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_secs(30), "not capped: {took:?}");
}

#[tokio::test]
async fn size_parameter_returns_that_many_bytes() {
    let echo = spawn_echo(&[]);
    let req = Request::post("/?size=1000")
        .body(Full::new(Bytes::from_static(b"ignored")))
        .unwrap();
    let response = send_h1(echo.addr, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "1000");
    assert_eq!(response.body().len(), 1000);
}

#[tokio::test]
async fn malformed_parameters_are_400_naming_the_parameter() {
    let echo = spawn_echo(&["--max-size", "1KiB"]);
    for (query, expected) in [
        ("status=abc", "status: 'abc' is not an HTTP status code"),
        ("delay=soon", "delay: 'soon' is not a duration"),
        ("status=503:60,429:50", "add up to 110%"),
        (
            "size=2KiB",
            "size: '2KiB' is 2048 bytes, over this server's maximum of 1024 bytes",
        ),
        ("header=NoColon", "header: 'NoColon' is not Name:Value"),
        ("close=maybe", "close: 'maybe'"),
    ] {
        let response = send_h1(echo.addr, get(&format!("/?{query}"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(
            text(&response).contains(expected),
            "{query}: {}",
            text(&response)
        );
    }
}

#[test]
fn close_parameter_closes_the_http1_connection_after_the_response() {
    let echo = spawn_echo(&[]);
    let mut stream = std::net::TcpStream::connect(echo.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Two pipelined requests: the first keeps the connection alive, the second asks
    // the server to close it; reading to EOF only returns because the server closed.
    write!(
        stream,
        "GET /first HTTP/1.1\r\nhost: x\r\n\r\nGET /second?close=true HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("server closes the connection");
    let raw = String::from_utf8_lossy(&raw).to_lowercase();
    assert_eq!(raw.matches("http/1.1 200 ok").count(), 2, "{raw}");
    let (first, second) = raw.split_at(raw.rfind("http/1.1 200 ok").unwrap());
    assert!(!first.contains("connection: close"), "{first}");
    assert!(second.contains("connection: close"), "{second}");
}

#[tokio::test]
async fn seeded_servers_repeat_the_same_weighted_outcomes() {
    async fn statuses(seed: &str) -> Vec<u16> {
        let echo = spawn_echo(&["--seed", seed]);
        let mut sender = h2_connect(echo.addr).await;
        let mut out = Vec::new();
        for _ in 0..100 {
            out.push(
                send_h2(&mut sender, echo.addr, "/?status=503:50", "")
                    .await
                    .status()
                    .as_u16(),
            );
        }
        out
    }
    let first = statuses("7").await;
    assert_eq!(first, statuses("7").await);
    assert_ne!(first, statuses("8").await);
    assert!(first.contains(&503) && first.contains(&200), "{first:?}");
}

// === reserved paths and --name ===

#[tokio::test]
async fn healthz_says_ok() {
    let echo = spawn_echo(&[]);
    let response = send_h1(echo.addr, get("/healthz?status=500")).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "query parameters do not apply"
    );
    assert_eq!(response.body(), "ok");
}

#[tokio::test]
async fn debug_dumps_the_request() {
    let echo = spawn_echo(&[]);
    let req = Request::patch("/debug")
        .header("x-probe", "hello")
        .body(Full::new(Bytes::from_static(b"the body")))
        .unwrap();
    let response = send_h1(echo.addr, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let dump = text(&response);
    for expected in [
        "method: PATCH",
        "x-probe: hello",
        "remote: 127.0.0.1:",
        "the body",
    ] {
        assert!(
            dump.contains(expected),
            "{expected:?} missing from:\n{dump}"
        );
    }
}

#[tokio::test]
async fn name_flag_adds_the_server_header_to_every_response() {
    let echo = spawn_echo(&["--name", "reviews-v2"]);
    for path in ["/", "/healthz", "/stats", "/debug", "/?status=abc"] {
        let response = send_h1(echo.addr, get(path)).await;
        assert_eq!(
            response.headers()["x-meshrig-server"],
            "reviews-v2",
            "{path}"
        );
    }
    let plain = spawn_echo(&[]);
    let response = send_h1(plain.addr, get("/")).await;
    assert!(!response.headers().contains_key("x-meshrig-server"));
}

// === HTTP/2 and TLS ===

#[tokio::test]
async fn h2c_prior_knowledge_echoes() {
    let echo = spawn_echo(&[]);
    let mut sender = h2_connect(echo.addr).await;
    let response = send_h2(&mut sender, echo.addr, "/?header=X-A:1", "over h2").await;
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-a"], "1");
    assert_eq!(response.body(), "over h2");
}

#[tokio::test]
async fn stats_see_concurrent_streams_on_one_h2_connection() {
    let echo = spawn_echo(&[]);
    let addr = echo.addr;
    let sender = h2_connect(addr).await;
    let requests: Vec<_> = (0..2)
        .map(|_| {
            let mut sender = sender.clone();
            tokio::spawn(async move { send_h2(&mut sender, addr, "/?delay=1s", "").await.status() })
        })
        .collect();
    wait_in_flight(addr, 2).await;
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    let now = stats(addr).await;
    assert_eq!(now["requests_total"], 2, "{now}");
    assert_eq!(now["in_flight"], 0, "{now}");
    assert_eq!(now["max_in_flight"], 2, "{now}");
    assert_eq!(
        now["connections_total"], 1,
        "/stats polls are not counted: {now}"
    );
}

/// A real TLS client (the `openssl` CLI) that trusts only the test CA and checks the
/// host name and ALPN. The TLS client in-process, with h2, is tested in
/// `loadgen::echo::server`.
#[test]
fn tls_with_cert_and_key_serves_https() {
    let echo = spawn_echo(&[
        "--cert",
        &data("echo-cert.pem"),
        "--key",
        &data("echo-key.pem"),
    ]);
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &echo.addr.to_string(),
            "-servername",
            "localhost",
        ])
        .args(["-verify_hostname", "localhost", "-verify_return_error"])
        .args([
            "-CAfile",
            &data("echo-ca.pem"),
            "-alpn",
            "http/1.1",
            "-ign_eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI is needed for this test");
    client
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let out = client.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openssl s_client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}");
    assert!(stdout.contains("ALPN protocol: http/1.1"), "{stdout}");
    assert!(stdout.contains("HTTP/1.1 200 OK"), "{stdout}");
    assert!(stdout.contains("content-length: 2\r\n"), "{stdout}");
    assert!(stdout.contains("\r\n\r\nok"), "{stdout}");
}

// === flags and process behaviour ===

/// Runs `meshrig echo ARGS` expecting it to exit at once; returns (code, stderr).
fn echo_exit(args: &[&str]) -> (i32, String) {
    let out = run_with_limit(meshrig().arg("echo").args(args), Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("listening"),
        "should not have started: {stdout}"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_exit_2_with_one_line_naming_the_flag_or_file() {
    let cert = data("echo-cert.pem");
    let key = data("echo-key.pem");
    let not_pem = format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
    for (args, expected) in [
        (vec!["--cert", &cert], "--cert needs --key"),
        (vec!["--key", &key], "--key needs --cert"),
        (vec!["--cert", &not_pem, "--key", &key], "Cargo.toml"),
        (vec!["--cert", &cert, "--key", &not_pem], "--key"),
        (
            vec!["--max-delay", "nonsense"],
            "--max-delay: 'nonsense' is not a duration",
        ),
        (vec!["--max-size", "huge"], "--max-size"),
        (vec!["--addr", "localhost:80"], "--addr"),
        (vec!["--threads", "0"], "--threads"),
    ] {
        let (code, stderr) = echo_exit(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn address_in_use_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = echo_exit(&["--addr", &addr]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigint_finishes_in_flight_requests_then_exits_0() {
    let mut echo = spawn_echo(&[]);
    let addr = echo.addr;
    let pending = tokio::spawn(send_h1(addr, get("/?delay=300ms&status=202")));
    wait_in_flight(addr, 1).await;

    let pid = echo.child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());

    assert_eq!(
        pending.await.unwrap().status(),
        StatusCode::ACCEPTED,
        "drained, not dropped"
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = echo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running after SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after exit"
    );
}
