//! One proxied connection: two pumps (one per direction), each a reader that stamps
//! chunks with a release time and a writer that delivers them when allowed.
//!
//! ```text
//!  client ──read──▶ [queue: chunk, release_at] ──write (latency, bandwidth, stalls)──▶ server
//!  client ◀──write── [queue] ◀──read── server
//! ```
//!
//! The queue is bounded in bytes by a semaphore: a reader reads only as many bytes as
//! there is room for, and with no room it stops reading, so TCP backpressure reaches
//! the sender.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::bucket::TokenBucket;
use crate::fault::stream_seed;
use crate::link::Shared;
use crate::stats::Counters;
use crate::{Direction, Faults};

/// Largest chunk read from a socket at once.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection ended other than by both sides closing cleanly.
#[derive(Debug)]
enum Abort {
    /// The reset fault fired.
    Injected,
    /// A socket failed (peer reset, broken pipe, ...); the other side is reset too.
    Io,
}

/// Proxies one accepted connection until both directions close, a fault resets it,
/// or a socket fails. Cancelling the future (link shutdown) closes both sockets.
pub(crate) async fn serve(client: TcpStream, conn_id: u64, shared: Arc<Shared>) {
    let counters = &shared.counters;
    let mut faults = shared.faults.subscribe();
    // Blackhole: while partitioned, the connection is accepted (the kernel completed
    // the handshake) but nothing is forwarded, as if the SYN were lost and retried.
    if faults.wait_for(|f| !f.is_partitioned()).await.is_err() {
        return;
    }
    let connected = timeout(
        shared.config.connect_timeout,
        TcpStream::connect(shared.upstream),
    )
    .await;
    let Ok(Ok(server)) = connected else {
        Counters::bump(&counters.upstream_connect_failures);
        reset(&client);
        return;
    };
    // The link must not add Nagle delays of its own on top of the configured latency.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let (mut client, mut server) = (client, server);
    match proxy(&mut client, &mut server, conn_id, &shared).await {
        Ok(()) => {}
        Err(abort) => {
            if matches!(abort, Abort::Injected) {
                Counters::bump(&counters.resets_injected);
            }
            reset(&client);
            reset(&server);
        }
    }
}

/// Closes `stream` with an RST instead of a FIN once it is dropped.
pub(crate) fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn proxy(
    client: &mut TcpStream,
    server: &mut TcpStream,
    conn_id: u64,
    shared: &Shared,
) -> Result<(), Abort> {
    // Borrowed halves: unlike owned halves they do not send a FIN when dropped, so an
    // abort can still turn the close into an RST.
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let upstream = pump(
        client_read,
        server_write,
        Direction::Upstream,
        conn_id,
        shared,
    );
    let downstream = pump(
        server_read,
        client_write,
        Direction::Downstream,
        conn_id,
        shared,
    );
    tokio::try_join!(upstream, downstream).map(|_| ())
}

/// A chunk waiting in a direction's queue. Holds its share of the queue limit until
/// it is delivered or dropped.
#[derive(Debug)]
struct Chunk<'a> {
    data: Vec<u8>,
    release_at: Instant,
    _permit: OwnedSemaphorePermit,
    dir: Direction,
    counters: &'a Counters,
}

impl Drop for Chunk<'_> {
    fn drop(&mut self) {
        self.counters.dequeue(self.dir, self.data.len());
    }
}

#[derive(Debug)]
enum Item<'a> {
    Chunk(Chunk<'a>),
    /// The reader saw end of stream; forward the FIN after everything before it.
    Eof,
}

async fn pump<R, W>(
    reader: R,
    writer: W,
    dir: Direction,
    conn_id: u64,
    shared: &Shared,
) -> Result<(), Abort>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let queue_limit_bytes = shared.config.queue_limit_bytes;
    let permits = Arc::new(Semaphore::new(queue_limit_bytes));
    // Unbounded in items but bounded in bytes by `permits`.
    let (tx, rx) = mpsc::unbounded_channel();
    // Stream 0 is the accept loop; each connection direction gets its own stream.
    let stream = 1 + 2 * conn_id + u64::try_from(dir.index()).unwrap_or(0);
    let rng = SmallRng::seed_from_u64(stream_seed(shared.config.seed, stream));
    let read = read_side(
        reader,
        tx,
        permits,
        dir,
        shared,
        rng,
        READ_CHUNK_BYTES.min(queue_limit_bytes),
    );
    let write = write_side(writer, rx, dir, shared);
    tokio::try_join!(read, write).map(|_| ())
}

async fn read_side<'a, R: AsyncRead + Unpin>(
    mut reader: R,
    tx: mpsc::UnboundedSender<Item<'a>>,
    permits: Arc<Semaphore>,
    dir: Direction,
    shared: &'a Shared,
    mut rng: SmallRng,
    chunk_bytes: usize,
) -> Result<(), Abort> {
    let mut faults = shared.faults.subscribe();
    let mut buf = vec![0; chunk_bytes];
    let mut last_release_at = Instant::now();
    loop {
        // A partitioned direction does not even read: the sender's socket buffers fill
        // and it sees the same backpressure a dead network would give it.
        if faults
            .wait_for(|f| !f.direction(dir).partitioned)
            .await
            .is_err()
        {
            return Ok(());
        }
        // Reserve room before reading, so the link never holds more than the limit,
        // not even the chunk in hand: wait for one byte of room, take what else is free.
        let Ok(mut permit) = Arc::clone(&permits).acquire_owned().await else {
            return Ok(());
        };
        let room = (1 + permits.available_permits()).min(buf.len());
        if let Ok(more) =
            Arc::clone(&permits).try_acquire_many_owned(u32::try_from(room - 1).unwrap_or(0))
        {
            permit.merge(more);
        }
        let room = permit.num_permits();
        let n = reader.read(&mut buf[..room]).await.map_err(|_| Abort::Io)?;
        if n < room {
            drop(permit.split(room - n));
        }
        if n == 0 {
            let _ = tx.send(Item::Eof);
            return Ok(());
        }
        let read_at = Instant::now();
        let (latency, reset) = {
            let f = faults.borrow();
            (f.direction(dir).latency, f.reset_per_chunk)
        };
        if reset.draw(&mut rng) {
            return Err(Abort::Injected);
        }
        let delay = latency.map_or(Default::default(), |l| l.sample(&mut rng));
        // Never release before an earlier chunk: jitter delays, it does not reorder.
        let release_at = (read_at + delay).max(last_release_at);
        last_release_at = release_at;

        shared.counters.queue(dir, n);
        let chunk = Chunk {
            data: buf[..n].to_vec(),
            release_at,
            _permit: permit,
            dir,
            counters: &shared.counters,
        };
        if tx.send(Item::Chunk(chunk)).is_err() {
            return Ok(());
        }
    }
}

async fn write_side<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Item<'_>>,
    dir: Direction,
    shared: &Shared,
) -> Result<(), Abort> {
    let mut faults = shared.faults.subscribe();
    let mut bucket: Option<TokenBucket> = None;
    while let Some(item) = rx.recv().await {
        let chunk = match item {
            Item::Chunk(chunk) => chunk,
            Item::Eof => {
                if !wait_deliverable(&mut faults, dir).await {
                    return Ok(());
                }
                writer.shutdown().await.map_err(|_| Abort::Io)?;
                return Ok(());
            }
        };
        sleep_until(chunk.release_at).await;
        let mut offset = 0;
        while offset < chunk.data.len() {
            // Checked before every slice, so a partition or hold stops a chunk midway.
            if !wait_deliverable(&mut faults, dir).await {
                return Ok(());
            }
            let rate = faults.borrow().direction(dir).bandwidth_bytes_per_sec;
            let end = match rate {
                None => {
                    bucket = None;
                    chunk.data.len()
                }
                Some(rate) => {
                    let now = Instant::now();
                    let bucket = bucket.get_or_insert_with(|| TokenBucket::new(rate, now));
                    bucket.set_rate(rate, now);
                    let slice = (chunk.data.len() - offset).min(bucket.burst_bytes());
                    if let Err(wait) = bucket.take(slice, now) {
                        sleep(wait).await;
                        continue;
                    }
                    offset + slice
                }
            };
            writer
                .write_all(&chunk.data[offset..end])
                .await
                .map_err(|_| Abort::Io)?;
            shared.counters.add_bytes(dir, end - offset);
            offset = end;
        }
    }
    Ok(())
}

/// Waits until `dir` is neither partitioned nor held. `false` if the link is gone.
async fn wait_deliverable(faults: &mut watch::Receiver<Faults>, dir: Direction) -> bool {
    faults
        .wait_for(|f| !f.direction(dir).stalls_delivery())
        .await
        .is_ok()
}
