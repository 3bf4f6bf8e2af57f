//! Bodies: what the proxy sends and answers with, and the bounded buffering of request
//! bodies that makes retries possible.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};

/// Every body the proxy sends or answers with.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Request bodies up to this size are buffered so a retry can replay them; larger
/// ones are streamed, with retries off.
pub const MAX_BUFFERED_BODY_BYTES: usize = 64 * 1024;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// A request body after [`buffer`].
#[derive(Debug)]
pub enum RequestBody {
    /// Whole (at most [`MAX_BUFFERED_BODY_BYTES`]): replayable.
    Buffered(Bytes),
    /// Too large to buffer: what was read, then the rest. Sendable once.
    Streaming(Prefixed),
}

/// Reads `body` up to `limit` bytes. Trailers of a buffered body are dropped.
pub async fn buffer(mut body: ProxyBody, limit: usize) -> Result<RequestBody, hyper::Error> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() > limit {
            return Ok(RequestBody::Streaming(Prefixed {
                prefix: Some(buf.freeze()),
                rest: body,
            }));
        }
    }
    Ok(RequestBody::Buffered(buf.freeze()))
}

/// Bytes already read from a body, followed by the rest of it.
#[derive(Debug)]
pub struct Prefixed {
    prefix: Option<Bytes>,
    rest: ProxyBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + extra);
        }
        hint.set_lower(rest.lower() + extra);
        hint
    }
}

/// A body that counts the bytes of its data frames into a shared counter.
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    /// `inner`, adding every data frame's length to `bytes`.
    pub fn new(inner: B, bytes: Arc<AtomicU64>) -> Self {
        Counted { inner, bytes }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyEnd {
    /// Data bytes passed through.
    pub bytes: u64,
    /// Whether the body was read to its end (not dropped early or failed).
    pub complete: bool,
}

/// A body that calls `on_end` once: at its end, on an error, or when dropped.
pub struct OnEnd<B: Body> {
    inner: B,
    bytes: u64,
    /// The body's exact length when known (`content-length`): reaching it is the end
    /// even if the reader stops polling there (hyper's server does), so the upstream
    /// connection is reused instead of closed.
    expected: Option<u64>,
    on_end: Option<Box<dyn FnOnce(BodyEnd) + Send + Sync>>,
}

impl<B: Body> std::fmt::Debug for OnEnd<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnEnd").field("bytes", &self.bytes).finish()
    }
}

impl<B: Body> OnEnd<B> {
    pub fn new(inner: B, on_end: impl FnOnce(BodyEnd) + Send + Sync + 'static) -> Self {
        OnEnd {
            expected: inner.size_hint().exact(),
            inner,
            bytes: 0,
            on_end: Some(Box::new(on_end)),
        }
    }

    /// Read to the end: the inner body says so, or its known length was reached.
    fn at_end(&self) -> bool {
        self.inner.is_end_stream() || self.expected.is_some_and(|n| self.bytes >= n)
    }

    fn end(&mut self, complete: bool) {
        if let Some(f) = self.on_end.take() {
            f(BodyEnd {
                bytes: self.bytes,
                complete,
            });
        }
    }
}

impl<B: Body> Drop for OnEnd<B> {
    fn drop(&mut self) {
        let complete = self.at_end();
        self.end(complete);
    }
}

impl<B> Body for OnEnd<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.at_end() {
                    self.end(true);
                }
            }
            Poll::Ready(None) => self.end(true),
            Poll::Ready(Some(Err(_))) => self.end(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Like hyper's `Incoming` with a `content-length`: an exact size, and no end
    /// signalled until it is polled once more.
    struct Sized(Option<Bytes>);

    impl Body for Sized {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(5)
        }
    }

    #[tokio::test]
    async fn a_body_read_to_its_length_is_complete_even_if_never_polled_again() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut body = OnEnd::new(Sized(Some(Bytes::from_static(b"hello"))), move |e| {
            s.lock().unwrap().push(e)
        });
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().unwrap().len(), 5);
        // The reader stops at content-length, as hyper's server does, and drops it.
        drop(body);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![BodyEnd {
                bytes: 5,
                complete: true
            }],
            "a complete response must let the upstream connection be reused"
        );
        // Dropped short of its length: not complete.
        let s = seen.clone();
        drop(OnEnd::new(
            Sized(Some(Bytes::from_static(b"hello"))),
            move |e| s.lock().unwrap().push(e),
        ));
        assert!(!seen.lock().unwrap()[1].complete);
    }

    #[tokio::test]
    async fn on_end_fires_once_at_the_end_and_on_drop() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let body = OnEnd::new(full("hello"), move |e| s.lock().unwrap().push(e));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        let s = seen.clone();
        drop(OnEnd::new(full("x"), move |e| s.lock().unwrap().push(e)));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                BodyEnd {
                    bytes: 5,
                    complete: true
                },
                BodyEnd {
                    bytes: 0,
                    complete: false
                }
            ]
        );
    }

    #[tokio::test]
    async fn buffers_up_to_the_limit_then_streams() {
        let counter = Arc::new(AtomicU64::new(0));
        let body = Counted::new(full(vec![7u8; 100]), counter.clone()).boxed();
        match buffer(body, 10).await.unwrap() {
            RequestBody::Streaming(p) => {
                let all = p.collect().await.unwrap().to_bytes();
                assert_eq!(all.len(), 100);
            }
            RequestBody::Buffered(_) => panic!("over the limit"),
        }
        assert_eq!(counter.load(Ordering::Relaxed), 100);
        match buffer(full("abc"), 10).await.unwrap() {
            RequestBody::Buffered(b) => assert_eq!(&b[..], b"abc"),
            RequestBody::Streaming(_) => panic!("under the limit"),
        }
    }
}
