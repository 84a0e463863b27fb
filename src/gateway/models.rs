//! `GET /v1/models` and `GET /v1/models/{id}`: the models this tenant may use, in the caller's
//! shape: OpenAI's list, or Anthropic's paginated one (`has_more`, `first_id`, `last_id`,
//! `limit`, `after_id`, `before_id`) for an Anthropic client.

use std::collections::BTreeMap;

use serde_json::json;

use crate::formats::Format;

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
    let models = reachable(snapshot, tenant);
    if format == Format::Gemini {
        // Every model on one page: Google's pager stops where no `nextPageToken` is given.
        let models: Vec<_> = models
            .into_iter()
            .map(|(id, owner)| model_object(format, id, owner))
            .collect();
        return json!({ "models": models }).to_string();
    }
    if format != Format::Anthropic {
        let data: Vec<_> = models
            .into_iter()
            .map(|(id, owner)| model_object(format, id, owner))
            .collect();
        return json!({"object": "list", "data": data}).to_string();
    }
    let ids: Vec<&str> = models.into_keys().collect();
    let (shown, has_more) = page.of(&ids);
    let data: Vec<_> = shown
        .iter()
        .map(|id| model_object(format, id, ""))
        .collect();
    json!({
        "data": data,
        "has_more": has_more,
        "first_id": shown.first(),
        "last_id": shown.last(),
    })
    .to_string()
}

/// A page of Anthropic's model list, from its query (`limit` 1 to 1,000, default 20;
/// `after_id` or `before_id`, exclusive).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page<'a> {
    /// Most models on the page.
    pub limit: Option<usize>,
    /// Models after this id.
    pub after_id: Option<std::borrow::Cow<'a, str>>,
    /// Models before this id.
    pub before_id: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Page<'a> {
    /// Reads the page from a query string; a `limit` outside 1 to 1,000 is an error.
    pub fn from_query(query: Option<&'a str>) -> Result<Self, String> {
        let mut page = Page::default();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*name {
                "limit" => {
                    let limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|limit| (1..=1000).contains(limit))
                        .ok_or("limit must be an integer from 1 to 1000")?;
                    page.limit = Some(limit);
                }
                "after_id" => page.after_id = Some(value),
                "before_id" => page.before_id = Some(value),
                _ => {}
            }
        }
        Ok(page)
    }

    /// The ids of `sorted` on this page, and whether more lie beyond it.
    fn of<'s>(&self, sorted: &'s [&'s str]) -> (&'s [&'s str], bool) {
        let limit = self.limit.unwrap_or(20);
        if let Some(before) = &self.before_id {
            let end = sorted.partition_point(|id| *id < before.as_ref());
            let start = end.saturating_sub(limit);
            return (&sorted[start..end], start > 0);
        }
        let start = self.after_id.as_ref().map_or(0, |after| {
            sorted.partition_point(|id| *id <= after.as_ref())
        });
        let end = (start + limit).min(sorted.len());
        (&sorted[start..end], end < sorted.len())
    }
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
    Some(model_object(format, id, owner).to_string())
}

/// One model in the caller's shape. The gateway knows no release dates: Anthropic's
/// `created_at` is the epoch and OpenAI's `created` is 0.
fn model_object(format: Format, id: &str, owner: &str) -> serde_json::Value {
    match format {
        Format::Anthropic => json!({
            "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"
        }),
        Format::Gemini => json!({
            "name": format!("models/{id}"), "baseModelId": id, "displayName": id,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        }),
        _ => json!({"id": id, "object": "model", "created": 0, "owned_by": owner}),
    }
}

/// Every model name and alias the tenant may reach, with the provider that serves it.
fn reachable<'a>(snapshot: &'a Snapshot, tenant: &'a TenantConfig) -> BTreeMap<&'a str, &'a str> {
    let mut models: BTreeMap<&str, &str> = BTreeMap::new();
    if let Some(model) = tenant.cli.as_ref().and_then(|cli| cli.model.as_deref()) {
        models.insert(model, "cli");
    }
    for (_, pool) in pools(&snapshot.config, tenant) {
        for provider in pool {
            for model in &provider.models {
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
