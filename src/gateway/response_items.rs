//! The assistant messages the Responses front door returned, kept a while per tenant so a
//! later request may refer to them by id (`{"type": "item_reference", "id": "msg_…"}`): the
//! Vercel AI SDK sends an earlier answer that way by default, and no upstream holds it — the
//! platform's key stores nothing at the provider (`store` is off), and a translated target
//! never saw the id.
//!
//! Bounded: at most [`MAX_BYTES`] of items across tenants (least recently used go first),
//! each for [`TIME_TO_LIVE`]. Kept in this replica's memory: behind several replicas a
//! reference resolves where the answer was served (route a conversation to one replica, or
//! have the client send the text itself, `store: false` in the AI SDK's provider options).
//! A reference no entry answers goes on only to a tenant's own key (its provider may hold it);
//! every other target refuses it by name. One tenant's ids never resolve for another.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use serde_json::Value;

use crate::formats::stream::ItemSink;

/// The most bytes of items kept at once.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// How long an item is kept after it was returned.
pub const TIME_TO_LIVE: Duration = Duration::from_secs(60 * 60);

/// The largest single item kept (a longer answer is not kept: the client must resend it).
const MAX_ITEM_BYTES: usize = 1024 * 1024;

/// Items by (tenant id, item id), as the JSON the client received.
#[derive(Clone)]
pub struct ResponseItems {
    cache: Cache<(Arc<str>, String), Kept>,
}

/// An item kept, and its size written out (what it adds to a request that refers to it).
#[derive(Clone)]
struct Kept {
    item: Arc<Value>,
    bytes: usize,
}

/// The references of one request resolve to more than the request body may hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the 'item_reference's of this request stand for more than {room} bytes, more than a request body may hold; send fewer earlier items"
)]
pub struct TooLarge {
    /// The bytes the references could still add.
    pub room: usize,
}

impl Default for ResponseItems {
    fn default() -> Self {
        Self::new(MAX_BYTES, TIME_TO_LIVE)
    }
}

impl ResponseItems {
    /// A store of at most `max_bytes` of items, each kept `ttl`.
    pub fn new(max_bytes: u64, ttl: Duration) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &(Arc<str>, String), kept: &Kept| {
                let bytes = key.0.len() + key.1.len() + kept.bytes;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .build();
        Self { cache }
    }

    /// Where a tenant's answers hand their messages.
    pub fn sink(&self, tenant: &str) -> ItemSink {
        let (cache, tenant) = (self.cache.clone(), Arc::<str>::from(tenant));
        ItemSink(Arc::new(move |item: &Value| {
            let Some(id) = item.get("id").and_then(Value::as_str) else {
                return;
            };
            let bytes = item.to_string().len();
            if bytes <= MAX_ITEM_BYTES {
                let kept = Kept {
                    item: Arc::new(item.clone()),
                    bytes,
                };
                cache.insert((tenant.clone(), id.to_owned()), kept);
            }
        }))
    }

    /// Replaces each `item_reference` in `input` the tenant's kept items answer, adding at
    /// most `room` bytes in all (a request that refers to its items is as large as one that
    /// sends them, and is bounded like one); the bytes added. The references no item answers
    /// stay: a tenant's own key may hold them at its provider, and every other target refuses
    /// them by name.
    pub fn resolve(
        &self,
        tenant: &str,
        input: &mut [Value],
        room: usize,
    ) -> Result<usize, TooLarge> {
        let tenant = Arc::<str>::from(tenant);
        let mut added = 0usize;
        for item in input.iter_mut() {
            if item.get("type").and_then(Value::as_str) != Some("item_reference") {
                continue;
            }
            let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
            if let Some(kept) = self.cache.get(&(tenant.clone(), id.to_owned())) {
                // Checked before the copy: many references to one large item cost no more
                // than the room they are refused at.
                added = added.saturating_add(kept.bytes);
                if added > room {
                    return Err(TooLarge { room });
                }
                *item = Value::clone(&kept.item);
            }
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tenant_resolves_its_own_items_and_no_one_elses() {
        let items = ResponseItems::default();
        let message = json!({"type": "message", "id": "msg_1", "role": "assistant",
            "content": [{"type": "output_text", "text": "earlier answer"}]});
        items.sink("team-a/acme").keep(&message);
        let mut input = vec![
            json!({"role": "user", "content": "hi"}),
            json!({"type": "item_reference", "id": "msg_1"}),
        ];
        let size = message.to_string().len();
        assert_eq!(items.resolve("team-a/acme", &mut input, 1 << 20), Ok(size));
        assert_eq!(input[1], message);
        let reference = json!({"type": "item_reference", "id": "msg_1"});
        let mut theirs = vec![reference.clone()];
        assert_eq!(items.resolve("team-b/other", &mut theirs, 1 << 20), Ok(0));
        assert_eq!(theirs, [reference]);
    }

    #[test]
    fn references_may_add_no_more_than_a_body_may_hold() {
        let items = ResponseItems::default();
        let message = json!({"type": "message", "id": "msg_big", "role": "assistant",
            "content": [{"type": "output_text", "text": "x".repeat(10_000)}]});
        items.sink("team-a/acme").keep(&message);
        let size = message.to_string().len();
        let reference = json!({"type": "item_reference", "id": "msg_big"});
        // A thousand references to one 10 KB answer: refused at the room, not copied a
        // thousand times.
        let mut many = vec![reference.clone(); 1000];
        let room = 3 * size;
        assert_eq!(
            items.resolve("team-a/acme", &mut many, room),
            Err(TooLarge { room })
        );
        let mut three = vec![reference; 3];
        assert_eq!(items.resolve("team-a/acme", &mut three, room), Ok(room));
    }
}
