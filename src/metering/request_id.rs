//! Request ids: one 128-bit number per admission (and per provider attempt), spelled as 32
//! lowercase hex digits in the ledger, the `x-dgidgi-request-id` header and Redis markers.
//! The top 48 bits are the admission's Unix millisecond and the other 80 are random, so the
//! ids are as unique as random ones and sort by time, as numbers and as text: the ledger's
//! rows are keyed by them in time order (new rows land on one page per commit) and found by
//! time through that key alone, without an index of their own.

/// Bits below the millisecond.
const RANDOM_BITS: u32 = 80;

/// The id's time part for `ms`, with its random bits zero.
fn time_part(ms: u64) -> u128 {
    u128::from(ms & ((1u64 << 48) - 1)) << RANDOM_BITS
}

/// A new id for something admitted at `now_ms`.
pub fn new(now_ms: u64) -> u128 {
    time_part(now_ms) | (rand::random::<u128>() & ((1u128 << RANDOM_BITS) - 1))
}

/// The id's text (fixed width, so text order is number order): its 16 bytes, most significant
/// first, in lowercase hex. The same digits as `format!("{id:032x}")`, which, made several
/// times a request, cost ~800 instructions each (`core::fmt`'s `u128` path; callgrind), and
/// `hex::encode` more (it collects the digits one `char` at a time).
pub fn text(id: u128) -> String {
    let mut digits = [0u8; 32];
    // 16 bytes always fill 32 digits, which are ASCII: neither fallback is ever taken.
    if hex::encode_to_slice(id.to_be_bytes(), &mut digits).is_err() {
        return String::new();
    }
    std::str::from_utf8(&digits).map_or_else(|_| String::new(), str::to_owned)
}

/// The text of the smallest id admitted at `ms`: every id admitted at or after `ms` is at
/// least this, every one before it is less.
pub fn first_at(ms: u64) -> String {
    text(time_part(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_their_millisecond_as_text() {
        let ms = 1_796_106_309_187;
        for _ in 0..1_000 {
            let id = text(new(ms));
            assert_eq!(id.len(), 32);
            assert!(first_at(ms) <= id, "{id}");
            assert!(id < first_at(ms + 1), "{id}");
            assert!(text(new(ms - 1)) < id);
        }
        assert_eq!(first_at(ms), format!("{ms:012x}{}", "0".repeat(20)));
        for id in [0, 1, u128::MAX, new(ms), rand::random()] {
            assert_eq!(text(id), format!("{id:032x}"));
        }
    }
}
