//! How many bytes of whole (non-streamed) answers the gateway holds at once, across every
//! request. One answer may be up to 32 MiB; without a total, a few hundred slow clients reading
//! large answers would hold gigabytes. Room is taken as an answer is read, and given back when
//! the answer's last copy (the response body the client reads) is dropped. A request that finds
//! no room fails before its first byte with 503, and the next target is not tried (it would
//! find none either).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The total the gateway holds by default: half of the chart's 512 MiB memory limit.
pub const DEFAULT_TOTAL_BYTES: usize = 256 * 1024 * 1024;

/// Room for buffered answers, counted in KiB.
#[derive(Clone, Debug)]
pub struct AnswerBuffers {
    kib: Arc<Semaphore>,
}

impl AnswerBuffers {
    /// Room for `total_bytes` at once.
    pub fn new(total_bytes: usize) -> Self {
        Self {
            kib: Arc::new(Semaphore::new((total_bytes / 1024).max(1))),
        }
    }

    /// Takes room for `bytes` more, or `None` when the gateway holds its most.
    pub fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024)).ok()?;
        self.kib.clone().try_acquire_many_owned(kib).ok()
    }

    /// Room left, in bytes (tests, metrics).
    pub fn available_bytes(&self) -> usize {
        self.kib.available_permits() * 1024
    }
}

/// Bytes that give their room back when the last copy of them is dropped.
struct Held {
    bytes: Bytes,
    _room: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// `bytes`, holding `room` for as long as they (or a clone of them) live; no copy.
pub fn hold(bytes: Bytes, room: Option<OwnedSemaphorePermit>) -> Bytes {
    match room {
        Some(room) => Bytes::from_owner(Held { bytes, _room: room }),
        None => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_given_back_when_the_last_copy_goes() {
        let buffers = AnswerBuffers::new(10 * 1024);
        let room = buffers.take(6 * 1024);
        assert!(room.is_some());
        assert!(buffers.take(5 * 1024).is_none(), "only 4 KiB left");
        let held = hold(Bytes::from(vec![7u8; 6 * 1024]), room);
        let copy = held.clone();
        drop(held);
        assert_eq!(buffers.available_bytes(), 4 * 1024);
        assert_eq!(copy.len(), 6 * 1024);
        drop(copy);
        assert_eq!(buffers.available_bytes(), 10 * 1024);
    }
}
