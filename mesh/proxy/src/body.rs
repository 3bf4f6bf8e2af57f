//! Bodies: what the proxy sends and answers with, and the bounded buffering of request
//! bodies that makes retries possible.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

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
pub async fn buffer(mut body: Incoming, limit: usize) -> Result<RequestBody, hyper::Error> {
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
    rest: Incoming,
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
