//! `GET /v1/models`: the models this tenant may use, in OpenAI's list format.

use std::collections::BTreeMap;

use serde_json::json;

use crate::config::load::Snapshot;
use crate::config::{Scope, TenantConfig};
use crate::crd::Source;

/// The model list body for a tenant: every model of every provider it may reach (its source's
/// pool), with aliases, sorted; nothing of other tenants.
pub fn list(snapshot: &Snapshot, tenant: &TenantConfig) -> String {
    let mut models: BTreeMap<String, String> = BTreeMap::new();
    if let Some(cli) = &tenant.cli
        && let Some(model) = &cli.model
    {
        models.insert(model.clone(), "cli".to_owned());
    }
    let uses_platform = match tenant.source {
        Source::Platform => true,
        Source::Tenant => tenant.allow_platform_fallback,
        Source::Cli => false,
    };
    for provider in &snapshot.config.providers {
        let visible = match provider.scope {
            Scope::Platform => uses_platform,
            Scope::Tenant => {
                tenant.source == Source::Tenant && tenant.providers.contains(&provider.id)
            }
        };
        if !visible {
            continue;
        }
        for model in &provider.models {
            for name in std::iter::once(&model.name).chain(&model.aliases) {
                models
                    .entry(name.clone())
                    .or_insert_with(|| provider.name.clone());
            }
        }
    }
    let data: Vec<_> = models
        .into_iter()
        .map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect();
    json!({"object": "list", "data": data}).to_string()
}
