//! Test servers and helpers.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use netfault::{Link, LinkBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound for any single step of a test; generous, it only turns hangs into failures.
pub const STEP: Duration = Duration::from_secs(20);

/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);

/// Awaits `fut`, failing the test if it takes longer than [`STEP`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// A TCP echo server on an ephemeral loopback port; runs until the runtime ends.
pub async fn spawn_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A link in front of a test-owned listener, and one connection through it:
/// `(link, client end, server end)`.
pub async fn linked_pair(
    builder: impl FnOnce(SocketAddr) -> LinkBuilder,
) -> (Link, TcpStream, TcpStream) {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link = builder(upstream.local_addr().unwrap())
        .bind()
        .await
        .unwrap();
    let client = TcpStream::connect(link.local_addr()).await.unwrap();
    let (server, _) = within("upstream accept", upstream.accept()).await.unwrap();
    (link, client, server)
}

/// `n` bytes of a pattern that makes misplaced or reordered bytes visible.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

/// Reads exactly `n` bytes.
pub async fn read_n(stream: &mut (impl AsyncReadExt + Unpin), n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    within("read_exact", stream.read_exact(&mut buf))
        .await
        .unwrap();
    buf
}

/// Asserts that no byte arrives on `stream` for [`QUIET`].
pub async fn assert_quiet(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1];
    if let Ok(res) = tokio::time::timeout(QUIET, stream.read(&mut buf)).await {
        panic!("{what}: expected nothing, read {res:?}");
    }
}

/// Reads until the stream ends or fails: `Ok(bytes before EOF)` or the error.
pub async fn read_to_close(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    within("read to close", stream.read_to_end(&mut out)).await?;
    Ok(out)
}

/// Asserts that a read on `stream` fails with a connection reset.
pub async fn assert_reset(stream: &mut TcpStream, what: &str) {
    match read_to_close(stream).await {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{what}: {e}"),
        Ok(bytes) => panic!(
            "{what}: expected a reset, got EOF after {} bytes",
            bytes.len()
        ),
    }
}

/// Connects to `addr` and asserts the connection is reset, which the client may
/// already see from `connect` when the RST beats it.
pub async fn assert_connect_reset(addr: SocketAddr, what: &str) {
    match TcpStream::connect(addr).await {
        Ok(mut stream) => assert_reset(&mut stream, what).await,
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{what}: {e}"),
    }
}

/// Polls `cond` every few milliseconds until it holds, failing after [`STEP`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}
