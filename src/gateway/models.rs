//! `GET /v1/models`: the models this tenant may use, in OpenAI's list format.

use std::collections::BTreeMap;

use serde_json::json;

use crate::config::TenantConfig;
use crate::config::load::Snapshot;
use crate::routing::plan::pools;

/// The model list body for a tenant: every model (and alias) of the providers its source may
/// reach — the routing plan's own pools — plus its cli model; sorted; nothing of other tenants.
pub fn list(snapshot: &Snapshot, tenant: &TenantConfig) -> String {
    let data: Vec<_> = reachable(snapshot, tenant)
        .into_iter()
        .map(|(id, owner)| model_object(id, owner))
        .collect();
    json!({"object": "list", "data": data}).to_string()
}

/// `GET /v1/models/{id}`: one model this tenant may use, or `None` (404) for any other,
/// whether it exists elsewhere or not (a tenant learns nothing of what it cannot reach).
pub fn retrieve(snapshot: &Snapshot, tenant: &TenantConfig, id: &str) -> Option<String> {
    let models = reachable(snapshot, tenant);
    let (id, owner) = models.get_key_value(id)?;
    Some(model_object(id, owner).to_string())
}

fn model_object(id: &str, owner: &str) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
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
                for name in std::iter::once(&model.name).chain(&model.aliases) {
                    models.entry(name).or_insert(&provider.name);
                }
            }
        }
    }
    models
}
