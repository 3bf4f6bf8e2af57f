//! Shutdown, limits, upstream failures.

use std::io;
use std::time::Duration;

use netfault::Link;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::support::{
    assert_connect_reset, eventually, linked_pair, read_n, read_to_close, spawn_echo, within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_live_connections_and_frees_the_port() {
    let link = Link::bind(spawn_echo().await).await.unwrap();
    let addr = link.local_addr();
    let net = link.handle();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"hi").await.unwrap();
    assert_eq!(read_n(&mut client, 2).await, b"hi");

    within("shutdown", link.shutdown()).await;
    assert!(net.is_shut_down());
    // The live connection is closed (EOF or reset, either way no more bytes).
    let rest = read_to_close(&mut client).await;
    assert!(rest.as_ref().map_or(true, |b| b.is_empty()), "{rest:?}");
    assert_eq!(net.stats().connections_active, 0);
    // Nothing listens any more, and the port can be bound again.
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    TcpListener::bind(addr).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_link_shuts_it_down() {
    let (link, mut client, mut server) = linked_pair(Link::builder).await;
    let addr = link.local_addr();
    let net = link.handle();
    drop(link);
    assert!(net.is_shut_down());
    let rest = read_to_close(&mut client).await;
    assert!(rest.as_ref().map_or(true, |b| b.is_empty()), "{rest:?}");
    let rest = read_to_close(&mut server).await;
    assert!(rest.as_ref().map_or(true, |b| b.is_empty()), "{rest:?}");
    eventually("port released", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    eventually("no connection left", || net.stats().connections_active == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_resets_the_client() {
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let link = Link::builder(dead_addr)
        .connect_timeout(Duration::from_secs(2))
        .bind()
        .await
        .unwrap();
    assert_connect_reset(link.local_addr(), "client of an unreachable upstream").await;
    assert_eq!(link.handle().stats().upstream_connect_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_reset() {
    let upstream = spawn_echo().await;
    let link = Link::builder(upstream)
        .max_connections(1)
        .bind()
        .await
        .unwrap();
    let mut first = TcpStream::connect(link.local_addr()).await.unwrap();
    first.write_all(b"1").await.unwrap();
    assert_eq!(read_n(&mut first, 1).await, b"1");

    assert_connect_reset(link.local_addr(), "connection over the limit").await;
    let stats = link.handle().stats();
    assert_eq!(
        (stats.connections_accepted, stats.connections_refused),
        (2, 1)
    );

    // The first is unaffected.
    first.write_all(b"2").await.unwrap();
    assert_eq!(
        within("first still works", read_n(&mut first, 1)).await,
        b"2"
    );
}
