//! A minimal HTTP/1.1 client connection, built for load generation.
//!
//! Every request of a target is the same bytes, so they are built once
//! ([`request_bytes`]) and each exchange writes them and reads one response in the
//! worker's own task: no per-request header maps, no hand-off to a connection task.
//! Response heads are parsed with `httparse` (hyper's parser); bodies are framed by
//! `content-length`, `chunked`, or the end of the connection, and counted, not kept.
//! HTTP/2 goes through hyper (`client.rs`).
//!
//! Limits: a response head larger than [`MAX_HEAD_BYTES`] or with more than
//! [`MAX_HEADERS`] headers is a protocol error. No pipelining: one request at a time.

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, Method, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::stats::ErrorKind;

/// Largest response head accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response headers accepted.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line accepted (size, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 4096;

/// The bytes of one HTTP/1.1 request: request line, `host`, the given headers,
/// `content-length` when there is a body (or the method carries one), the body.
pub fn request_bytes(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    if !path.starts_with('/') && !path.starts_with('*') {
        // `http://host?x=1`: the origin form needs the root path before the query.
        out.push(b'/');
    }
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let carries_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if (!body.is_empty() || carries_body) && !headers.contains_key(http::header::CONTENT_LENGTH) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The transport under an HTTP/1.1 connection.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One response, as the load generator records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct H1Response {
    pub status: u16,
    pub header_bytes: u64,
    pub body_bytes: u64,
    /// The group-by header's value, if asked for and present.
    pub group: Option<String>,
    /// The connection can carry another request.
    pub keep_alive: bool,
}

/// Why an exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum H1Error {
    /// The kept-alive connection was closed before any byte of the response arrived:
    /// the request may be retried on a fresh connection.
    Stale,
    Failed(ErrorKind),
}

/// An HTTP/1.1 connection owned by one worker.
#[derive(Debug)]
pub(crate) struct H1Conn {
    stream: Stream,
    buf: BytesMut,
    exchanges: u64,
    /// Opened before the request now being sent (warm-up): it may have been closed by
    /// the server while idle, like a kept-alive one.
    warm: bool,
}

impl H1Conn {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            exchanges: 0,
            warm: false,
        }
    }

    /// Marks a connection opened ahead of use (before the run starts): if the server
    /// closes it while idle, the first request may be retried like on a kept-alive one.
    pub fn mark_warm(&mut self) {
        self.warm = true;
    }

    /// Writes `request` and reads the whole response.
    ///
    /// `idempotent`: the request may be sent again safely (GET, HEAD, OPTIONS, TRACE,
    /// PUT, DELETE). Only then, and only on a connection that was idle before this
    /// request (kept alive, or warmed up) and that gave no byte of a response, is a
    /// failure reported as [`H1Error::Stale`] — the server closed the idle connection,
    /// as servers may — and retried by the caller, which counts the retry.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_only: bool,
        idempotent: bool,
        group_by: Option<&HeaderName>,
    ) -> Result<H1Response, H1Error> {
        let idle_before = self.exchanges > 0 || self.warm;
        self.exchanges += 1;
        self.warm = false;
        let stale_or = |kind: ErrorKind| {
            if idle_before && idempotent {
                H1Error::Stale
            } else {
                H1Error::Failed(kind)
            }
        };
        if let Err(e) = self.write(request).await {
            return Err(stale_or(classify(&e)));
        }
        self.buf.clear();
        // Read until the head parses.
        let (status, head_len, framing, keep_alive, group) = loop {
            match parse_head(&self.buf, head_only, group_by) {
                // An informational response (103 Early Hints, an unasked 100): skip it
                // and read the final one, as RFC 9110 says a client does.
                Ok(Some((status, len, ..))) if (100..200).contains(&status) && status != 101 => {
                    self.buf.advance(len);
                    continue;
                }
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(kind) => return Err(H1Error::Failed(kind)),
            }
            if self.buf.len() >= MAX_HEAD_BYTES {
                return Err(H1Error::Failed(ErrorKind::Protocol));
            }
            match self.read_more().await {
                Ok(0) if self.buf.is_empty() => return Err(stale_or(ErrorKind::Reset)),
                Ok(0) => return Err(H1Error::Failed(ErrorKind::Reset)),
                Ok(_) => {}
                Err(e) if self.buf.is_empty() => return Err(stale_or(classify(&e))),
                Err(e) => return Err(H1Error::Failed(classify(&e))),
            }
        };
        self.buf.advance(head_len);
        let (body_bytes, body_keeps_alive) = match framing {
            Framing::None => (0, true),
            Framing::Length(n) => (self.read_exact_body(n).await?, true),
            Framing::Chunked => (self.read_chunked_body().await?, true),
            Framing::UntilClose => (self.read_until_close().await?, false),
        };
        // Bytes after a complete response were never asked for (no pipelining): the
        // stream can no longer be trusted, so the connection is not reused.
        let clean = self.buf.is_empty();
        Ok(H1Response {
            status,
            header_bytes: head_len as u64,
            body_bytes,
            group,
            keep_alive: keep_alive && body_keeps_alive && clean,
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match &mut self.stream {
            Stream::Plain(s) => s.read_buf(&mut self.buf).await,
            Stream::Tls(s) => s.read_buf(&mut self.buf).await,
        }
    }

    /// Reads more, treating end of stream as the peer resetting mid-response.
    async fn need_more(&mut self) -> Result<(), H1Error> {
        match self.read_more().await {
            Ok(0) => Err(H1Error::Failed(ErrorKind::Reset)),
            Ok(_) => Ok(()),
            Err(e) => Err(H1Error::Failed(classify(&e))),
        }
    }

    async fn read_exact_body(&mut self, len: u64) -> Result<u64, H1Error> {
        let mut left = len;
        loop {
            let take = left.min(self.buf.len() as u64);
            self.buf.advance(take as usize);
            left -= take;
            if left == 0 {
                return Ok(len);
            }
            self.buf.clear();
            self.need_more().await?;
        }
    }

    async fn read_until_close(&mut self) -> Result<u64, H1Error> {
        let mut total = self.buf.len() as u64;
        self.buf.clear();
        loop {
            match self.read_more().await {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    total += n as u64;
                    self.buf.clear();
                }
                Err(e) => return Err(H1Error::Failed(classify(&e))),
            }
        }
    }

    async fn read_chunked_body(&mut self) -> Result<u64, H1Error> {
        let mut total = 0u64;
        loop {
            let size = loop {
                match parse_chunk_line(&self.buf) {
                    ChunkLine::Size { size, line_len } => {
                        self.buf.advance(line_len);
                        break size;
                    }
                    ChunkLine::Incomplete if self.buf.len() < MAX_CHUNK_LINE => {
                        self.need_more().await?
                    }
                    _ => return Err(H1Error::Failed(ErrorKind::Protocol)),
                }
            };
            if size == 0 {
                // Trailers: header lines up to an empty line.
                loop {
                    match find_crlf(&self.buf) {
                        Some(0) => {
                            self.buf.advance(2);
                            return Ok(total);
                        }
                        Some(n) => self.buf.advance(n + 2),
                        None if self.buf.len() < MAX_HEAD_BYTES => self.need_more().await?,
                        None => return Err(H1Error::Failed(ErrorKind::Protocol)),
                    }
                }
            }
            total += self.read_exact_body(size).await?;
            while self.buf.len() < 2 {
                self.need_more().await?;
            }
            if &self.buf[..2] != b"\r\n" {
                return Err(H1Error::Failed(ErrorKind::Protocol));
            }
            self.buf.advance(2);
        }
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

type Head = (u16, usize, Framing, bool, Option<String>);

/// Parses a response head from `buf`: `Ok(None)` when more bytes are needed. 1xx
/// informational responses are not expected (no `expect: 100-continue` is sent) and
/// are protocol errors.
fn parse_head(
    buf: &[u8],
    head_only: bool,
    group_by: Option<&HeaderName>,
) -> Result<Option<Head>, ErrorKind> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ErrorKind::Protocol),
    };
    let status = resp.code.ok_or(ErrorKind::Protocol)?;
    if status == 101 {
        // No upgrade was asked for: a switch of protocol is a protocol error here.
        return Err(ErrorKind::Protocol);
    }
    if (100..200).contains(&status) {
        return Ok(Some((status, head_len, Framing::None, true, None)));
    }
    let mut keep_alive = resp.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    let mut group = None;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).map_err(|_| ErrorKind::Protocol)?;
            let n: u64 = text.trim().parse().map_err(|_| ErrorKind::Protocol)?;
            if length.is_some_and(|m| m != n) {
                return Err(ErrorKind::Protocol);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .split(|&b| b == b',')
                .next_back()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
        if let Some(g) = group_by
            && group.is_none()
            && name.eq_ignore_ascii_case(g.as_str())
        {
            group = Some(String::from_utf8_lossy(h.value).into_owned());
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some((status, head_len, framing, keep_alive, group)))
}

enum ChunkLine {
    Size { size: u64, line_len: usize },
    Incomplete,
    Invalid,
}

fn parse_chunk_line(buf: &[u8]) -> ChunkLine {
    let Some(end) = find_crlf(buf) else {
        return ChunkLine::Incomplete;
    };
    let line = &buf[..end];
    let hex = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or(&[])
        .trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return ChunkLine::Invalid;
    }
    let mut size = 0u64;
    for &b in hex {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return ChunkLine::Invalid,
        };
        size = size * 16 + u64::from(digit);
    }
    ChunkLine::Size {
        size,
        line_len: end + 2,
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

pub(crate) fn classify(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => ErrorKind::ConnectRefused,
        K::TimedOut => ErrorKind::Timeout,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            ErrorKind::Reset
        }
        K::InvalidData => ErrorKind::Protocol,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connection to a raw TCP server that answers every request with the bytes the
    /// test gives, in the pieces it gives (to exercise partial reads).
    async fn conn_with_responses(pieces: Vec<Vec<u8>>, then_close: bool) -> H1Conn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req).await.unwrap();
            for p in pieces {
                s.write_all(&p).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            if then_close {
                drop(s);
            } else {
                // Keep the connection open until the test ends.
                let _ = s.read(&mut req).await;
            }
        });
        H1Conn::new(Stream::Plain(TcpStream::connect(addr).await.unwrap()))
    }

    const REQ: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn content_length_body_split_across_reads() {
        let mut c = conn_with_responses(
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-le".to_vec(),
                b"ngth: 10\r\nx-b: v1\r\n\r\n01234".to_vec(),
                b"56789".to_vec(),
            ],
            false,
        )
        .await;
        let name = HeaderName::from_static("x-b");
        let r = c.exchange(REQ, false, true, Some(&name)).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body_bytes, 10);
        assert_eq!(r.group.as_deref(), Some("v1"));
        assert!(r.keep_alive);
        // Status line 17 + content-length line 20 + x-b line 9 + blank line 2.
        assert_eq!(r.header_bytes, 48);
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let body = b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n1\r\n!\r\nA\r\n0123456789\r\n0\r\nx-trailer: t\r\n\r\n";
        // Deliver it one byte at a time.
        let pieces = body.iter().map(|b| vec![*b]).collect();
        let mut c = conn_with_responses(pieces, false).await;
        let r = c.exchange(REQ, false, true, None).await.unwrap();
        assert_eq!((r.status, r.body_bytes, r.keep_alive), (201, 16, true));
    }

    #[tokio::test]
    async fn close_delimited_body_and_connection_close() {
        let mut c = conn_with_responses(
            vec![
                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabc".to_vec(),
                b"def".to_vec(),
            ],
            true,
        )
        .await;
        let r = c.exchange(REQ, false, true, None).await.unwrap();
        assert_eq!((r.body_bytes, r.keep_alive), (6, false));
    }

    #[tokio::test]
    async fn no_body_for_204_and_head() {
        let mut c = conn_with_responses(
            vec![b"HTTP/1.1 204 No Content\r\ncontent-length: 99\r\n\r\n".to_vec()],
            false,
        )
        .await;
        let r = c.exchange(REQ, false, true, None).await.unwrap();
        assert_eq!((r.status, r.body_bytes), (204, 0));
        let mut c = conn_with_responses(
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n".to_vec()],
            false,
        )
        .await;
        let r = c.exchange(REQ, true, true, None).await.unwrap();
        assert_eq!((r.status, r.body_bytes), (200, 0));
    }

    #[tokio::test]
    async fn malformed_and_truncated_responses() {
        for (pieces, want) in [
            (
                vec![b"NOT HTTP AT ALL\r\n\r\n".to_vec()],
                ErrorKind::Protocol,
            ),
            (
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n".to_vec()],
                ErrorKind::Protocol,
            ),
            (
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec()],
                ErrorKind::Reset,
            ),
            (
                vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec()],
                ErrorKind::Protocol,
            ),
            // A 1xx is skipped; the connection then closes before the final response.
            (
                vec![b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()],
                ErrorKind::Reset,
            ),
            (
                vec![b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec()],
                ErrorKind::Protocol,
            ),
            (vec![b"HTTP/1.1 20".to_vec()], ErrorKind::Reset),
        ] {
            let mut c = conn_with_responses(pieces.clone(), true).await;
            let got = c.exchange(REQ, false, true, None).await;
            assert_eq!(got, Err(H1Error::Failed(want)), "{pieces:?}");
        }
    }

    #[tokio::test]
    async fn oversized_head_is_refused() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while head.len() <= MAX_HEAD_BYTES {
            head.extend_from_slice(b"x-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let mut c = conn_with_responses(vec![head], true).await;
        assert_eq!(
            c.exchange(REQ, false, true, None).await,
            Err(H1Error::Failed(ErrorKind::Protocol))
        );
    }

    #[tokio::test]
    async fn informational_responses_are_skipped_and_leftover_bytes_end_reuse() {
        let mut c = conn_with_responses(
            vec![b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA".to_vec()],
            false,
        )
        .await;
        let r = c.exchange(REQ, false, true, None).await.unwrap();
        assert_eq!((r.status, r.body_bytes), (200, 2));
        assert!(!r.keep_alive, "unrequested bytes after the response");
    }

    /// A POST is never replayed: a reused connection closed before any response byte
    /// is a real error for a non-idempotent request.
    #[tokio::test]
    async fn non_idempotent_requests_are_not_stale_retried() {
        let mut c = conn_with_responses(
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()],
            true,
        )
        .await;
        assert!(c.exchange(REQ, false, false, None).await.is_ok());
        assert_eq!(
            c.exchange(REQ, false, false, None).await,
            Err(H1Error::Failed(ErrorKind::Reset))
        );
    }

    #[test]
    fn a_query_without_a_path_gets_the_root_path() {
        let uri: Uri = "http://h:1?x=1".parse().unwrap();
        let bytes = request_bytes(&Method::GET, &uri, &HeaderMap::new(), b"");
        assert!(
            bytes.starts_with(b"GET /?x=1 HTTP/1.1\r\n"),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }

    #[tokio::test]
    async fn closed_before_first_byte_on_a_reused_connection_is_stale() {
        let mut c = conn_with_responses(
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()],
            true,
        )
        .await;
        assert!(c.exchange(REQ, false, true, None).await.is_ok());
        assert_eq!(
            c.exchange(REQ, false, true, None).await,
            Err(H1Error::Stale)
        );
    }

    #[test]
    fn request_bytes_are_well_formed() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.test:8080".parse().unwrap());
        let uri: Uri = "/a?b=1".parse().unwrap();
        let get = request_bytes(&Method::GET, &uri, &headers, b"");
        assert_eq!(
            get,
            b"GET /a?b=1 HTTP/1.1\r\nhost: example.test:8080\r\n\r\n"
        );
        let post = request_bytes(&Method::POST, &uri, &headers, b"xyz");
        assert!(post.ends_with(b"content-length: 3\r\n\r\nxyz"));
        let empty_post = request_bytes(&Method::POST, &uri, &headers, b"");
        assert!(empty_post.ends_with(b"content-length: 0\r\n\r\n"));
        // It parses as a request.
        let mut h = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut h);
        assert!(req.parse(&post).unwrap().is_complete());
    }
}
