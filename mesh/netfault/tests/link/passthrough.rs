//! A link without faults is a transparent TCP proxy.

use netfault::Link;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{linked_pair, pattern, read_n, read_to_close, spawn_echo, within};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_round_trips_byte_for_byte() {
    let link = Link::bind(spawn_echo().await).await.unwrap();
    let client = TcpStream::connect(link.local_addr()).await.unwrap();
    let (mut reader, mut writer) = client.into_split();
    let sent = pattern(MIB);
    let to_send = sent.clone();
    // The sender hands its half back: dropping it would half-close the connection.
    let sender = tokio::spawn(async move { writer.write_all(&to_send).await.map(|()| writer) });
    let received = read_n(&mut reader, MIB).await;
    let _writer = within("sender", sender).await.unwrap().unwrap();
    assert!(received == sent, "echoed bytes differ from sent bytes");

    let stats = link.handle().stats();
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(stats.connections_active, 1);
    assert_eq!(stats.bytes_upstream, MIB as u64);
    assert_eq!(stats.bytes_downstream, MIB as u64);
    assert_eq!(stats.resets_injected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_is_forwarded_each_way() {
    let (link, mut client, mut server) = linked_pair(Link::builder).await;
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut server).await.unwrap(), b"request");

    // The other direction still works after the client's FIN.
    server.write_all(b"response").await.unwrap();
    server.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut client).await.unwrap(), b"response");

    crate::support::eventually("connection closed", || {
        link.handle().stats().connections_active == 0
    })
    .await;
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).await.unwrap(), 0);
}
