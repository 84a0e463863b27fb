//! `GET /v1/models`: the models this tenant may use, in OpenAI's list format.

use std::collections::BTreeMap;

use serde_json::json;

use crate::config::TenantConfig;
use crate::config::load::Snapshot;
use crate::routing::plan::pools;

/// The model list body for a tenant: every model (and alias) of the providers its source may
/// reach — the routing plan's own pools — plus its cli model; sorted; nothing of other tenants.
pub fn list(snapshot: &Snapshot, tenant: &TenantConfig) -> String {
    let mut models: BTreeMap<&str, &str> = BTreeMap::new();
    if let Some(model) = tenant.cli.as_ref().and_then(|cli| cli.model.as_deref()) {
        models.insert(model, "cli");
    }
    for (_, pool) in pools(&snapshot.config, tenant) {
        for provider in pool {
            for model in &provider.models {
                for name in std::iter::once(&model.name).chain(&model.aliases) {
                    models.entry(name).or_insert(&provider.name);
                }
            }
        }
    }
    let data: Vec<_> = models
        .into_iter()
        .map(|(id, owner)| json!({"id": id, "object": "model", "created": 0, "owned_by": owner}))
        .collect();
    json!({"object": "list", "data": data}).to_string()
}
