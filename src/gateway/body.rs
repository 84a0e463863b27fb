//! The gateway's response body: a whole buffer, or an upstream body passed through frame by
//! frame. A streamed (SSE) upstream that fails mid-way ends with an error event in the
//! caller's format, never with a fake `[DONE]`; any other upstream body that fails aborts the
//! response so the client sees a broken transfer, not a truncated success.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A boxed error for failed transfers.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the gateway sends.
#[derive(Debug)]
pub enum ResponseBody {
    /// A complete buffer (errors, mock answers, model lists).
    Full(Full<Bytes>),
    /// An upstream body relayed as it arrives.
    Relay {
        /// The upstream body.
        inner: Incoming,
        /// For SSE: the event to send if the upstream fails; taken once sent.
        error_event: Option<Bytes>,
        /// Set once the body has ended.
        done: bool,
        /// When the provider's `timeouts.total` runs out: the relay ends like a failure.
        deadline: Pin<Box<tokio::time::Sleep>>,
    },
}

impl ResponseBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Full::new(bytes.into()))
    }

    /// Relays `inner` until `deadline`; `error_event` is sent instead of an abort if it fails or
    /// runs out of time (SSE streams).
    pub fn relay(
        inner: Incoming,
        error_event: Option<Bytes>,
        deadline: tokio::time::Instant,
    ) -> Self {
        Self::Relay {
            inner,
            error_event,
            done: false,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Self::Relay {
                inner,
                error_event,
                done,
                deadline,
            } => {
                if *done {
                    return Poll::Ready(None);
                }
                if deadline.as_mut().poll(cx).is_ready() {
                    *done = true;
                    tracing::warn!("upstream response exceeded the provider's total timeout");
                    return match error_event.take() {
                        Some(event) => Poll::Ready(Some(Ok(Frame::data(event)))),
                        None => {
                            Poll::Ready(Some(Err("the provider's total timeout ran out".into())))
                        }
                    };
                }
                match Pin::new(inner).poll_frame(cx) {
                    Poll::Ready(Some(Err(error))) => {
                        *done = true;
                        tracing::warn!("upstream failed mid-response: {error}");
                        match error_event.take() {
                            Some(event) => Poll::Ready(Some(Ok(Frame::data(event)))),
                            None => Poll::Ready(Some(Err(Box::new(error)))),
                        }
                    }
                    Poll::Ready(None) => {
                        *done = true;
                        Poll::Ready(None)
                    }
                    other => other.map_err(|e| Box::new(e) as BodyError),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(full) => full.is_end_stream(),
            Self::Relay { inner, done, .. } => *done || inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(full) => full.size_hint(),
            Self::Relay { inner, .. } => inner.size_hint(),
        }
    }
}
