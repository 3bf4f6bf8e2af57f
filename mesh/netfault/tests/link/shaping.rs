//! Latency and bandwidth.

use std::num::NonZeroU64;
use std::time::Duration;

use netfault::{Direction, Latency, Link};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{pattern, read_n, spawn_echo, within};

const ONE_WAY: Duration = Duration::from_millis(50);

async fn echo_link_with_latency(latency: Latency) -> Link {
    let link = Link::builder(spawn_echo().await)
        .seed(1)
        .bind()
        .await
        .unwrap();
    for dir in Direction::BOTH {
        link.handle().set_latency(dir, Some(latency));
    }
    link
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_takes_at_least_both_delays() {
    let link = echo_link_with_latency(Latency::fixed(ONE_WAY)).await;
    let mut client = TcpStream::connect(link.local_addr()).await.unwrap();
    client.set_nodelay(true).unwrap();
    for round in 0..3u8 {
        let started = Instant::now();
        client.write_all(&[round]).await.unwrap();
        assert_eq!(read_n(&mut client, 1).await, [round]);
        let rtt = started.elapsed();
        assert!(
            rtt >= 2 * ONE_WAY,
            "round {round}: rtt {rtt:?} < {:?}",
            2 * ONE_WAY
        );
    }
}

/// Messages sent back to back each pay the latency once, concurrently: latency is a
/// delay, not a throughput limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_messages_are_not_serialized_by_latency() {
    const MESSAGES: usize = 40;
    const MESSAGE_BYTES: usize = 16;
    let link = echo_link_with_latency(Latency::fixed(ONE_WAY)).await;
    let client = TcpStream::connect(link.local_addr()).await.unwrap();
    client.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = client.into_split();

    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let mut sent_at = Vec::with_capacity(MESSAGES);
        for i in 0..MESSAGES {
            sent_at.push(Instant::now());
            writer.write_all(&[i as u8; MESSAGE_BYTES]).await.unwrap();
            // Separate writes so the link reads (and delays) separate chunks.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sent_at
    });
    let mut arrived_at = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let msg = read_n(&mut reader, MESSAGE_BYTES).await;
        arrived_at.push(Instant::now());
        assert_eq!(msg, [i as u8; MESSAGE_BYTES], "message {i} out of order");
    }
    let total = started.elapsed();
    let sent_at = within("sender", sender).await.unwrap();

    for (i, (sent, arrived)) in sent_at.iter().zip(&arrived_at).enumerate() {
        let rtt = *arrived - *sent;
        assert!(rtt >= 2 * ONE_WAY, "message {i}: rtt {rtt:?}");
    }
    // Serialized, 40 round trips would take >= 4 s; pipelined they take ~0.2 s.
    let serialized = 2 * ONE_WAY * MESSAGES as u32;
    assert!(
        total < serialized / 2,
        "{MESSAGES} pipelined messages took {total:?}, serialized would be {serialized:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_never_reorders_bytes() {
    let latency = Latency::with_jitter(Duration::from_millis(5), Duration::from_millis(30));
    let link = echo_link_with_latency(latency).await;
    let client = TcpStream::connect(link.local_addr()).await.unwrap();
    client.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = client.into_split();
    let sent = pattern(200 * 100);
    let to_send = sent.clone();
    let sender = tokio::spawn(async move {
        for piece in to_send.chunks(100) {
            writer.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let received = read_n(&mut reader, sent.len()).await;
    within("sender", sender).await.unwrap();
    assert!(
        received == sent,
        "bytes reordered or corrupted under jitter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_cap_limits_throughput() {
    const MIB: usize = 1024 * 1024;
    let link = Link::bind(spawn_echo().await).await.unwrap();
    link.handle()
        .set_bandwidth(Direction::Upstream, NonZeroU64::new(MIB as u64));
    let client = TcpStream::connect(link.local_addr()).await.unwrap();
    let (mut reader, mut writer) = client.into_split();
    let sent = pattern(MIB);
    let to_send = sent.clone();

    let started = Instant::now();
    let sender = tokio::spawn(async move { writer.write_all(&to_send).await });
    let received = read_n(&mut reader, MIB).await;
    let took = started.elapsed();
    within("sender", sender).await.unwrap().unwrap();

    assert!(received == sent, "bytes differ under a bandwidth cap");
    // The bucket starts with a 50 ms burst, so 1 MiB at 1 MiB/s takes >= 0.95 s.
    assert!(
        took >= Duration::from_millis(900),
        "1 MiB at 1 MiB/s took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_cap_restores_full_speed_midstream() {
    let link = Link::bind(spawn_echo().await).await.unwrap();
    let net = link.handle();
    // 1 KiB/s: 64 KiB would take a minute.
    net.set_bandwidth(Direction::Downstream, NonZeroU64::new(1024));
    let mut client = TcpStream::connect(link.local_addr()).await.unwrap();
    let sent = pattern(64 * 1024);
    client.write_all(&sent).await.unwrap();
    let mut first = [0u8; 16];
    within("first capped bytes", client.read_exact(&mut first))
        .await
        .unwrap();
    net.set_bandwidth(Direction::Downstream, None);
    let rest = read_n(&mut client, sent.len() - first.len()).await;
    assert!(first[..] == sent[..16] && rest[..] == sent[16..]);
}
