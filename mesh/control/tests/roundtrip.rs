//! The control plane and its client in one process, on 127.0.0.1: versions reach
//! the client, its NACK is recorded and it keeps going, a client started before
//! the control plane retries until it is up.

use std::time::Duration;

use mesh_control::client::{self, ClientOptions};
use mesh_control::{ControlOptions, ControlPlane, ProxyIdentity, RegistryFile, Source, Status};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: { host: reviews, subset: SUBSET }
";

fn vs(subset: &str) -> Source {
    Source::new("reviews.yaml", VS.replace("SUBSET", subset))
}

/// The next update the client passed on, within 10 s.
async fn recv(rx: &mut mpsc::UnboundedReceiver<(u64, usize)>) -> (u64, usize) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an update in time")
        .expect("client alive")
}

/// Polls `plane`'s status until `cond` holds, for at most 10 s.
async fn wait_status(plane: &ControlPlane, what: &str, cond: impl Fn(&Status) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond(&plane.status()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            plane.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_flow_and_a_nack_is_recorded() {
    let registry = RegistryFile::parse(
        r#"{"services":[{"name":"reviews","instances":[{"address":"127.0.0.1:9081"}]}]}"#,
    )
    .unwrap();
    // Reserve a port, start the client first: it must retry until the plane is up.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut identity = ProxyIdentity::new("client", "default");
    identity.id = "c1".into();
    let mut options = ClientOptions::new(&format!("http://{addr}"), identity).unwrap();
    options.backoff_initial = Duration::from_millis(20);
    options.backoff_max = Duration::from_millis(100);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = tokio::spawn(client::run(options, move |u| {
        let version = u.version;
        let _ = tx.send((version, u.snapshot.routes.services().len()));
        if version == 2 {
            Err("not this one".to_owned())
        } else {
            Ok(())
        }
    }));
    tokio::time::sleep(Duration::from_millis(150)).await;

    let plane =
        ControlPlane::with_sources(vec![vs("v1")], registry, ControlOptions::default()).unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
    let server = tokio::spawn(plane.clone().serve(listener, std::future::pending()));

    assert_eq!(recv(&mut rx).await, (1, 1));
    wait_status(&plane, "ACK of 1", |s| {
        s.proxies
            .iter()
            .any(|p| p.id == "c1" && p.acked_version == Some(1))
    })
    .await;

    assert_eq!(plane.publish(vec![vs("v2")]), Ok(2));
    assert_eq!(recv(&mut rx).await.0, 2);
    wait_status(&plane, "NACK of 2", |s| s.nacks_total == 1).await;
    let s = plane.status();
    let p = s.proxies.iter().find(|p| p.id == "c1").unwrap();
    assert_eq!(p.acked_version, Some(1), "a NACKed version is not ACKed");
    assert_eq!(p.last_nack.as_ref().unwrap().error, "not this one");

    assert_eq!(plane.publish(vec![vs("v3")]), Ok(3));
    assert_eq!(recv(&mut rx).await.0, 3);
    wait_status(&plane, "ACK of 3", |s| {
        s.proxies.iter().any(|p| p.acked_version == Some(3))
    })
    .await;
    let s = plane.status();
    let v3 = s.propagation.iter().find(|p| p.version == 3).unwrap();
    assert_eq!((v3.proxies, v3.acked), (1, 1));
    assert!(v3.p100_ms.is_some());
    client.abort();
    server.abort();
}
