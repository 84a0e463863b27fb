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
    cache: Cache<(Arc<str>, String), Arc<Value>>,
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
            .weigher(|key: &(Arc<str>, String), item: &Arc<Value>| {
                let bytes = key.1.len() + item.to_string().len();
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
            if item.to_string().len() <= MAX_ITEM_BYTES {
                cache.insert((tenant.clone(), id.to_owned()), Arc::new(item.clone()));
            }
        }))
    }

    /// Replaces each `item_reference` in `input` the tenant's kept items answer; whether any
    /// was. The others stay: a tenant's own key may hold them at its provider, and every other
    /// target refuses them by name.
    pub fn resolve(&self, tenant: &str, input: &mut [Value]) -> bool {
        let tenant = Arc::<str>::from(tenant);
        let mut replaced = false;
        for item in input.iter_mut() {
            if item.get("type").and_then(Value::as_str) != Some("item_reference") {
                continue;
            }
            let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
            if let Some(kept) = self.cache.get(&(tenant.clone(), id.to_owned())) {
                *item = Value::clone(&kept);
                replaced = true;
            }
        }
        replaced
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
        assert!(items.resolve("team-a/acme", &mut input));
        assert_eq!(input[1], message);
        let reference = json!({"type": "item_reference", "id": "msg_1"});
        let mut theirs = vec![reference.clone()];
        assert!(!items.resolve("team-b/other", &mut theirs));
        assert_eq!(theirs, [reference]);
    }
}
