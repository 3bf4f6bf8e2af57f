//! Unit tests of the echo handler, without sockets.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::Method;
use http_body_util::{BodyExt, Full};

use super::*;

fn service(config: EchoConfig) -> EchoService {
    EchoService::new(config).unwrap()
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::default()).unwrap()
}

/// Runs a handler future that must not wait (no delay, body already complete).
fn handle_now(
    svc: &EchoService,
    conn: &ConnectionState,
    req: Request<Full<Bytes>>,
) -> Response<EchoBody> {
    let mut fut = pin!(svc.handle(req, conn));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(response) => response,
        Poll::Pending => panic!("the handler waited although nothing asked it to"),
    }
}

async fn body_text(response: Response<EchoBody>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn echoes_body_and_reflects_end_to_end_headers_only() {
    let svc = service(EchoConfig::default());
    let conn = svc.connection(None);
    let req = Request::post("/anything")
        .header("host", "example.test")
        .header("x-trace", "abc")
        .header("content-type", "text/plain")
        .header("content-length", "5")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let response = handle_now(&svc, &conn, req);
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h["x-trace"], "abc");
    assert_eq!(h["content-type"], "text/plain");
    for gone in [
        "host",
        "content-length",
        "connection",
        "x-hop",
        "te",
        "x-meshrig-server",
    ] {
        assert!(!h.contains_key(gone), "{gone} should not be reflected");
    }
    assert_eq!(response.body().size_hint().exact(), Some(5));
    assert_eq!(body_text(response).await, "hello");
}

#[tokio::test]
async fn query_parameters_shape_the_response() {
    let svc = service(EchoConfig::default());
    let conn = svc.connection(None);
    let req = Request::get("/?status=503&size=1000&header=X-A:1&header=X-A:2&header=x-trace:new")
        .header("x-trace", "old")
        .body(Full::default())
        .unwrap();
    let response = handle_now(&svc, &conn, req);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let values: Vec<_> = response.headers().get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(
        response.headers()["x-trace"],
        "new",
        "header= replaces the reflected value"
    );
    assert_eq!(body_text(response).await.len(), 1000);
}

#[tokio::test]
async fn no_content_statuses_have_no_body() {
    let svc = service(EchoConfig::default());
    let conn = svc.connection(None);
    let req = Request::post("/?status=204")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let response = handle_now(&svc, &conn, req);
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.body().is_end_stream());
}

#[tokio::test]
async fn bad_parameter_is_400_naming_it() {
    let svc = service(EchoConfig {
        name: Some("east-1".into()),
        ..EchoConfig::default()
    });
    let conn = svc.connection(None);
    let response = handle_now(&svc, &conn, get("/?status=abc"));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[SERVER_HEADER], "east-1");
    let text = body_text(response).await;
    assert!(
        text.starts_with("status: 'abc' is not an HTTP status code"),
        "{text}"
    );
    assert_eq!(
        svc.stats().requests_total,
        1,
        "a 400 on the echo path still counts"
    );
    assert_eq!(svc.stats().in_flight, 0);
}

#[tokio::test]
async fn close_applies_to_http1_only() {
    let svc = service(EchoConfig::default());
    let conn = svc.connection(None);
    let response = handle_now(&svc, &conn, get("/?close=true"));
    assert_eq!(response.headers()["connection"], "close");

    let mut req = get("/?close=true");
    *req.version_mut() = Version::HTTP_2;
    let response = handle_now(&svc, &conn, req);
    assert!(!response.headers().contains_key("connection"));
}

#[tokio::test]
async fn reserved_paths() {
    let svc = service(EchoConfig {
        name: Some("east-1".into()),
        ..EchoConfig::default()
    });
    let conn = svc.connection(Some("192.0.2.7:4242".parse().unwrap()));

    let response = handle_now(&svc, &conn, get("/healthz"));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[SERVER_HEADER], "east-1");
    assert_eq!(body_text(response).await, "ok");

    let req = Request::builder()
        .method(Method::PUT)
        .uri("/debug?x=1")
        .header("x-probe", "hello")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let text = body_text(handle_now(&svc, &conn, req)).await;
    for expected in [
        "method: PUT",
        "uri: /debug?x=1",
        "version: HTTP/1.1",
        "remote: 192.0.2.7:4242",
        "x-probe: hello",
        "body (7 bytes):\npayload",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    let response = handle_now(&svc, &conn, get("/stats"));
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        body_text(response).await,
        "{\"requests_total\":0,\"in_flight\":0,\"max_in_flight\":0,\"connections_total\":0}\n",
        "reserved paths, and connections that only carried them, are not counted"
    );
}

#[test]
fn in_flight_lasts_until_the_response_body_is_dropped() {
    let svc = service(EchoConfig::default());
    let conn = svc.connection(None);
    let first = handle_now(&svc, &conn, get("/"));
    let second = handle_now(&svc, &conn, get("/"));
    assert_eq!(svc.stats().in_flight, 2);
    drop(first);
    drop(second);
    let _third = handle_now(&svc, &conn, get("/"));
    assert_eq!(
        svc.stats(),
        EchoStats {
            requests_total: 3,
            in_flight: 1,
            max_in_flight: 2,
            connections_total: 1,
        }
    );
}

#[tokio::test]
async fn oversized_request_body_is_413() {
    let svc = service(EchoConfig {
        max_size: 4,
        ..EchoConfig::default()
    });
    let conn = svc.connection(None);
    let req = Request::post("/?header=X-A:1")
        .body(Full::new(Bytes::from_static(b"12345")))
        .unwrap();
    let response = handle_now(&svc, &conn, req);
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!response.headers().contains_key("x-a"));
    assert!(body_text(response).await.contains("maximum of 4 bytes"));
}

#[test]
fn seeded_connections_draw_the_same_outcomes() {
    let statuses = |seed| {
        let svc = service(EchoConfig {
            seed: Some(seed),
            ..EchoConfig::default()
        });
        let conn = svc.connection(None);
        (0..100)
            .map(|_| {
                handle_now(&svc, &conn, get("/?status=503:50"))
                    .status()
                    .as_u16()
            })
            .collect::<Vec<_>>()
    };
    let run = statuses(9);
    assert_eq!(run, statuses(9));
    assert!(run.contains(&503) && run.contains(&200));
}

#[test]
fn name_must_be_a_header_value() {
    let err = EchoService::new(EchoConfig {
        name: Some("bad\nname".into()),
        ..EchoConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, EchoConfigError::Name { .. }));
}
