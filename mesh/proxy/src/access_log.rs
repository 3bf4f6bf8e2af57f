//! The access log: one JSON object per line per request, with Envoy's field names.
//!
//! Requests never wait for the log: an [`AccessLog`] hands each [`Entry`] to a writer
//! thread through a channel bounded at [`QUEUE_CAPACITY`] lines; when it is full the
//! line is dropped and counted ([`AccessLog::dropped`]). The writer flushes whenever
//! the queue runs empty, so a quiet proxy's log is complete on disk.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

use serde::Serialize;

/// Lines queued for the writer before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    /// Appended to; created if missing.
    File(PathBuf),
}

impl Sink {
    /// `-` is stdout, anything else a file path.
    pub fn parse(value: &str) -> Self {
        if value == "-" {
            Sink::Stdout
        } else {
            Sink::File(PathBuf::from(value))
        }
    }
}

/// One request, as Envoy's default JSON access-log fields name it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// RFC 3339, UTC, milliseconds.
    pub start_time: String,
    pub method: String,
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: String,
    pub response_code: u16,
    /// Envoy's flags (`UO`, `UH`, `URX`, ...), comma-separated; `-` when none.
    pub response_flags: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// From the request's arrival to the response's last byte.
    pub duration_ms: u64,
    /// From the first try's start to the response headers; `None` without upstream.
    pub upstream_service_time: Option<u64>,
    pub upstream_host: Option<String>,
    /// `outbound|PORT|SUBSET|HOST` as Envoy names clusters (port left empty), or
    /// `inbound|PORT||`.
    pub upstream_cluster: Option<String>,
    pub x_request_id: Option<String>,
    pub authority: Option<String>,
    pub downstream_remote_address: String,
    /// `source` (outbound listener) or `destination` (inbound).
    pub reporter: &'static str,
    /// Upstream tries made.
    pub attempts: u32,
    /// The downstream peer's SPIFFE ID when it connected with mTLS (Envoy's
    /// `%DOWNSTREAM_PEER_URI_SAN%`), inbound only.
    pub downstream_peer_uri_san: Option<String>,
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A handle to the log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

/// The log's sink could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the access log {path}: {source}")]
pub struct OpenError {
    pub path: String,
    pub source: std::io::Error,
}

impl AccessLog {
    /// Opens `sink` and starts the writer thread.
    pub fn open(sink: &Sink) -> Result<Self, OpenError> {
        let out: Box<dyn Write + Send> = match sink {
            Sink::Stdout => Box::new(std::io::stdout()),
            Sink::File(path) => Box::new(open_append(path)?),
        };
        Ok(Self::with_writer(out, QUEUE_CAPACITY))
    }

    /// A log writing to `out`, queueing at most `capacity` lines.
    pub fn with_writer(out: Box<dyn Write + Send>, capacity: usize) -> Self {
        let (tx, rx) = sync_channel(capacity);
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || write_lines(rx, out))
            .map(drop)
            .unwrap_or_else(|_| ());
        AccessLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues `entry`; drops (and counts) it when the queue is full. Never blocks.
    pub fn log(&self, entry: &Entry) {
        let Ok(line) = serde_json::to_string(entry) else {
            return;
        };
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped so far because the writer fell behind (or died).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, OpenError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| OpenError {
            path: path.display().to_string(),
            source,
        })
}

/// The writer thread: ends when every [`AccessLog`] handle is gone or the sink fails.
fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::new(out);
    while let Ok(line) = rx.recv() {
        let mut next = Some(line);
        while let Some(line) = next {
            if writeln!(out, "{line}").is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::*;

    /// A writer that blocks until released, then records.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<Mutex<bool>>,
        entered: Arc<Mutex<bool>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            *self.entered.lock().unwrap() = true;
            let deadline = Instant::now() + Duration::from_secs(10);
            while !*self.open.lock().unwrap() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn entry(code: u16) -> Entry {
        Entry {
            start_time: rfc3339(SystemTime::UNIX_EPOCH),
            method: "GET".into(),
            path: "/".into(),
            protocol: "HTTP/1.1".into(),
            response_code: code,
            response_flags: "-".into(),
            bytes_received: 0,
            bytes_sent: 3,
            duration_ms: 1,
            upstream_service_time: Some(1),
            upstream_host: Some("127.0.0.1:1".into()),
            upstream_cluster: Some("outbound|||a.default.svc.cluster.local".into()),
            x_request_id: Some("r".into()),
            authority: Some("a".into()),
            downstream_remote_address: "127.0.0.1:2".into(),
            reporter: "source",
            attempts: 1,
            downstream_peer_uri_san: None,
        }
    }

    #[test]
    fn a_stuck_writer_drops_and_counts_instead_of_blocking() {
        let gate = Gate::default();
        let log = AccessLog::with_writer(Box::new(gate.clone()), 2);
        log.log(&entry(200));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !*gate.entered.lock().unwrap() {
            assert!(Instant::now() < deadline, "the writer never wrote");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The writer is stuck in a write: two lines fit the queue, the rest drop.
        let start = Instant::now();
        for i in 1..50 {
            log.log(&entry(200 + i));
        }
        assert!(start.elapsed() < Duration::from_secs(5), "log() blocked");
        assert_eq!(log.dropped(), 47);
        *gate.open.lock().unwrap() = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = String::from_utf8(gate.written.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() as u64 + log.dropped() == 50 {
                for l in lines {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    assert_eq!(v["start_time"], "1970-01-01T00:00:00.000Z");
                    assert_eq!(v["reporter"], "source");
                }
                break;
            }
            assert!(Instant::now() < deadline, "writer never caught up: {text}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
