//! The metering hook: every response an attempt serves reports exactly one [`Completion`] when
//! its body ends, fails mid-way or is dropped (the client went away), so a reservation can be
//! settled to what the provider reported — and no disconnect escapes metering.

use std::time::Instant;

use tokio::sync::oneshot;

use crate::usage::{FinishReason, Usage};

/// How a served body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The whole answer reached the client.
    Complete,
    /// The client stopped reading (disconnect) before the end.
    ClientGone,
    /// The upstream failed mid-answer (reset, timeout, an error event in its stream).
    UpstreamFailed,
}

/// What one served response used, reported once when its body is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The usage the provider reported (`None`: it reported none; charge the reservation).
    pub usage: Option<Usage>,
    /// How the body ended.
    pub end: End,
    /// When the first body byte was handed to the client.
    pub first_byte: Option<Instant>,
    /// The HTTP status the client got.
    pub status: u16,
    /// Why the model stopped, when the answer said.
    pub finish_reason: Option<FinishReason>,
}

/// The sending half, carried by a response body. Dropping it unfinished reports
/// [`End::ClientGone`].
#[derive(Debug)]
pub struct Reporter {
    sender: Option<oneshot::Sender<Completion>>,
    usage: Option<Usage>,
    first_byte: Option<Instant>,
    status: u16,
    finish_reason: Option<FinishReason>,
}

impl Reporter {
    /// A meter for a response with `status`, and the receiver its one completion goes to.
    pub fn new(status: u16) -> (Self, oneshot::Receiver<Completion>) {
        let (sender, receiver) = oneshot::channel();
        (
            Self {
                sender: Some(sender),
                usage: None,
                first_byte: None,
                status,
                finish_reason: None,
            },
            receiver,
        )
    }

    /// Records the usage read so far (the latest report wins).
    pub fn set_usage(&mut self, usage: Option<Usage>) {
        if usage.is_some() {
            self.usage = usage;
        }
    }

    /// Records why the model stopped (the latest report wins).
    pub fn set_finish_reason(&mut self, reason: Option<FinishReason>) {
        if reason.is_some() {
            self.finish_reason = reason;
        }
    }

    /// Notes that bytes are being handed to the client (the first call counts).
    pub fn bytes_sent(&mut self) {
        self.first_byte.get_or_insert_with(Instant::now);
    }

    /// Whether the completion has been reported.
    pub fn is_finished(&self) -> bool {
        self.sender.is_none()
    }

    /// Reports the completion; later calls do nothing.
    pub fn finish(&mut self, end: End) {
        if let Some(sender) = self.sender.take() {
            // The receiver may be gone (nobody meters this request): nothing to do then.
            let _ = sender.send(Completion {
                usage: self.usage,
                end,
                first_byte: self.first_byte,
                status: self.status,
                finish_reason: self.finish_reason,
            });
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish(End::ClientGone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_once_with_the_first_end() {
        let (mut meter, mut receiver) = Reporter::new(200);
        meter.set_usage(Some(Usage {
            input_tokens: 3,
            ..Usage::default()
        }));
        meter.set_usage(None);
        meter.bytes_sent();
        meter.finish(End::Complete);
        meter.finish(End::UpstreamFailed);
        drop(meter);
        let completion = receiver.try_recv().unwrap();
        assert_eq!(completion.end, End::Complete);
        assert_eq!(completion.usage.unwrap().input_tokens, 3);
        assert!(completion.first_byte.is_some());
        assert_eq!(completion.status, 200);
    }

    #[test]
    fn dropping_unfinished_reports_client_gone() {
        let (meter, mut receiver) = Reporter::new(200);
        drop(meter);
        assert_eq!(receiver.try_recv().unwrap().end, End::ClientGone);
    }
}
