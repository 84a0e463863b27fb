//! `GET /v1/models` and `GET /v1/models/{id}`: the models this tenant may use, in the caller's
//! shape: OpenAI's list, or Anthropic's paginated one (`has_more`, `first_id`, `last_id`,
//! `limit`, `after_id`, `before_id`) for an Anthropic client.

use std::collections::BTreeMap;

use crate::formats::Format;
use crate::formats::dialect::dialect;
pub use crate::formats::models::Page;

use crate::config::TenantConfig;
use crate::config::load::Snapshot;
use crate::routing::plan::{pools, tier_allows};

/// A model id as a path holds it, its `%XX` escapes decoded (SDKs escape the slash of
/// `provider/model`); left as it is when they do not decode to UTF-8 (no model is named so).
pub fn id_in_path(segment: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .unwrap_or(std::borrow::Cow::Borrowed(segment))
}

/// The model list body for a tenant: every model (and alias) of the providers its source may
/// reach — the routing plan's own pools — plus its cli model; sorted; nothing of other tenants.
pub fn list(snapshot: &Snapshot, tenant: &TenantConfig, format: Format, page: &Page<'_>) -> String {
    let models: Vec<(&str, &str)> = reachable(snapshot, tenant).into_iter().collect();
    dialect(format).model_list(&models, page).to_string()
}

/// `GET /v1/models/{id}`: one model this tenant may use, or `None` (404) for any other,
/// whether it exists elsewhere or not (a tenant learns nothing of what it cannot reach).
pub fn retrieve(
    snapshot: &Snapshot,
    tenant: &TenantConfig,
    id: &str,
    format: Format,
) -> Option<String> {
    let models = reachable(snapshot, tenant);
    let (id, owner) = models.get_key_value(id)?;
    Some(dialect(format).model_object(id, owner).to_string())
}

/// Every model name and alias the tenant may reach, with the provider that serves it.
fn reachable<'a>(snapshot: &'a Snapshot, tenant: &'a TenantConfig) -> BTreeMap<&'a str, &'a str> {
    let mut models: BTreeMap<&str, &str> = BTreeMap::new();
    if let Some(model) = tenant.cli.as_ref().and_then(|cli| cli.model.as_deref()) {
        models.insert(model, "cli");
    }
    for (_, pool) in pools(&snapshot.config, tenant) {
        for provider in pool {
            for model in provider.models.iter() {
                // What the tenant's tier may not use is not offered: each name as routing
                // checks it (the name a request sends).
                let names = std::iter::once(&model.name).chain(&model.aliases);
                for name in names.filter(|name| tier_allows(tenant, provider, name)) {
                    models.entry(name).or_insert(&provider.name);
                }
            }
        }
    }
    models
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_pages_follow_after_and_before_ids() {
        let ids = ["a", "b", "c", "d", "e"];
        fn page(query: &str) -> Page<'_> {
            Page::from_query(Some(query)).unwrap()
        }
        assert_eq!(page("limit=2").of(&ids), (&ids[..2], true));
        assert_eq!(page("limit=2&after_id=b").of(&ids), (&ids[2..4], true));
        assert_eq!(page("limit=2&after_id=d").of(&ids), (&ids[4..], false));
        assert_eq!(page("limit=2&before_id=d").of(&ids), (&ids[1..3], true));
        assert_eq!(page("limit=9&before_id=c").of(&ids), (&ids[..2], false));
        assert_eq!(page("").of(&ids), (&ids[..], false));
        assert!(Page::from_query(Some("limit=0")).is_err());
        assert!(Page::from_query(Some("limit=1001")).is_err());
    }
}
