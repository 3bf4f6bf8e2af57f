//! Resets, partitions, hold/release.

use std::time::Duration;

use netfault::{Direction, Link, Probability, ResetScope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{
    QUIET, assert_connect_reset, assert_quiet, assert_reset, eventually, linked_pair, pattern,
    read_n, spawn_echo, within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_per_connection_resets_the_client_and_spares_the_upstream() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = Link::bind(upstream.local_addr().unwrap()).await.unwrap();
    link.handle()
        .set_reset_probability(ResetScope::Connection, Probability::ONE);

    assert_connect_reset(link.local_addr(), "client of a reset connection").await;
    assert!(
        tokio::time::timeout(QUIET, upstream.accept())
            .await
            .is_err(),
        "the upstream must never see a reset connection"
    );
    let stats = link.handle().stats();
    assert_eq!((stats.connections_accepted, stats.resets_injected), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_per_chunk_resets_both_ends() {
    let (link, mut client, mut server) = linked_pair(Link::builder).await;
    client.write_all(b"before").await.unwrap();
    assert_eq!(read_n(&mut server, 6).await, b"before");

    link.handle()
        .set_reset_probability(ResetScope::Chunk, Probability::ONE);
    client.write_all(b"doomed").await.unwrap();
    assert_reset(&mut server, "server").await;
    assert_reset(&mut client, "client").await;
    assert_eq!(link.handle().stats().resets_injected, 1);
    assert_eq!(
        link.handle().stats().bytes_upstream,
        6,
        "the doomed chunk is not delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_resets_the_same_connections() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let link = Link::builder(spawn_echo().await)
            .seed(seed)
            .bind()
            .await
            .unwrap();
        let half = Probability::new(0.5).unwrap();
        link.handle()
            .set_reset_probability(ResetScope::Connection, half);
        let mut reset = Vec::new();
        // One connection at a time, so accept order (and so the draws) is fixed.
        for _ in 0..32 {
            let proxied = within("probe", async {
                let mut client = TcpStream::connect(link.local_addr()).await?;
                client.write_all(b"?").await?;
                let mut buf = [0u8; 1];
                client.read_exact(&mut buf).await
            })
            .await;
            reset.push(proxied.is_err());
        }
        reset
    }
    let a = outcomes(7).await;
    assert_eq!(a, outcomes(7).await, "same seed, same resets");
    assert!(
        a.contains(&true) && a.contains(&false),
        "p = 0.5 over 32: {a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_stalls_both_directions_until_healed() {
    let (link, mut client, mut server) = linked_pair(Link::builder).await;
    let net = link.handle();
    net.partition();
    client.write_all(b"ping").await.unwrap();
    server.write_all(b"pong").await.unwrap();
    assert_quiet(&mut server, "server during partition").await;
    assert_quiet(&mut client, "client during partition").await;
    let stats = net.stats();
    assert_eq!((stats.bytes_upstream, stats.bytes_downstream), (0, 0));

    net.heal();
    assert_eq!(read_n(&mut server, 4).await, b"ping");
    assert_eq!(read_n(&mut client, 4).await, b"pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_partition_stalls_only_that_direction() {
    let (link, mut client, mut server) = linked_pair(Link::builder).await;
    let net = link.handle();
    net.partition_one_way(Direction::Upstream);

    server.write_all(b"downstream flows").await.unwrap();
    assert_eq!(read_n(&mut client, 16).await, b"downstream flows");
    client.write_all(b"upstream stalls").await.unwrap();
    assert_quiet(&mut server, "server behind a one-way partition").await;

    net.heal();
    assert_eq!(read_n(&mut server, 15).await, b"upstream stalls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_are_blackholed_until_healed() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = Link::bind(upstream.local_addr().unwrap()).await.unwrap();
    link.handle().partition();

    let mut client = TcpStream::connect(link.local_addr()).await.unwrap();
    client.write_all(b"hello?").await.unwrap();
    assert!(
        tokio::time::timeout(QUIET, upstream.accept())
            .await
            .is_err(),
        "no upstream connection during a partition"
    );
    assert_quiet(&mut client, "blackholed client").await;

    link.handle().heal();
    let (mut server, _) = within("accept after heal", upstream.accept())
        .await
        .unwrap();
    assert_eq!(read_n(&mut server, 6).await, b"hello?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_queues_bytes_and_release_delivers_them_in_order() {
    let (link, mut client, mut server) = linked_pair(Link::builder).await;
    let net = link.handle();
    net.hold();
    let pieces: [&[u8]; 3] = [b"first-", b"second-", b"third"];
    for piece in pieces {
        client.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.write_all(b"reply").await.unwrap();
    // Held bytes are read into the link (the sender's writes succeed) ...
    eventually("held bytes queued", || {
        let s = net.stats();
        s.bytes_queued_upstream == 18 && s.bytes_queued_downstream == 5
    })
    .await;
    // ... but not delivered.
    assert_quiet(&mut server, "server while held").await;
    assert_quiet(&mut client, "client while held").await;

    net.release();
    assert_eq!(read_n(&mut server, 18).await, b"first-second-third");
    assert_eq!(read_n(&mut client, 5).await, b"reply");
    eventually("queues drained", || {
        let s = net.stats();
        (s.bytes_queued_upstream, s.bytes_queued_downstream) == (0, 0)
    })
    .await;
}

/// A hold cannot make the link buffer without limit: past the queue limit it stops
/// reading and the sender blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_bytes_are_bounded_by_the_queue_limit() {
    const LIMIT: usize = 64 * 1024;
    const TOTAL: usize = 32 * 1024 * 1024;
    let (link, client, mut server) =
        linked_pair(|up| Link::builder(up).queue_limit_bytes(LIMIT)).await;
    let net = link.handle();
    net.hold();
    let sent = pattern(TOTAL);
    let to_send = sent.clone();
    let (_client_read, mut client_write) = client.into_split();
    let sender = tokio::spawn(async move { client_write.write_all(&to_send).await });

    eventually("queue fills to its limit", || {
        net.stats().bytes_queued_upstream == LIMIT as u64
    })
    .await;
    tokio::time::sleep(QUIET).await;
    let queued = net.stats().bytes_queued_upstream;
    assert!(queued <= LIMIT as u64, "queued {queued} > limit {LIMIT}");
    assert!(
        !sender.is_finished(),
        "the sender must be blocked by backpressure"
    );

    net.release();
    let mut received = vec![0; TOTAL];
    within("all bytes after release", server.read_exact(&mut received))
        .await
        .unwrap();
    within("sender", sender).await.unwrap().unwrap();
    assert!(received == sent, "bytes differ after a bounded hold");
}
