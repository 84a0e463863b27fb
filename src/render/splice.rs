//! Splicing: replacing what some tenant namespaces contributed to a whole render's output with
//! a render of those namespaces alone. This is what lets the operator answer a change to one
//! tenant among 100,000 without rendering the other 99,999 again.
//!
//! It is sound because render is local. What a tenant namespace contributes (its tenants,
//! providers, routing rules, stored keys, access key Secrets and statuses) depends only on its
//! own objects and on the platform's: the platform namespace's objects, the platform
//! configuration, and every namespace's labels (the platform rules' `tenantSelector`s). So a
//! render of the platform, every namespace's labels and a few namespaces' objects yields the
//! platform's part whole and those namespaces' parts exactly as a full render would.
//!
//! The one thing that crosses namespaces is an access key's uniqueness: a key claimed twice is
//! refused to the later tenant in render order, wherever it is. The caller keeps that exact:
//! the namespaces of both sides of a collision ([`RenderOutput::access_key_conflicts`]) are
//! always rendered together, and a part whose keys collide with a namespace it left out is
//! thrown away for a full render.

use std::collections::BTreeSet;

use super::RenderOutput;

/// Replaces, in `whole`, everything of the platform namespace and of `namespaces` with `part`,
/// a render of the platform namespace, every namespace's labels and the objects of
/// `namespaces` (and nothing else). Every list keeps render's order.
pub fn splice(whole: &mut RenderOutput, part: RenderOutput, namespaces: &BTreeSet<String>) {
    let platform = part.config.platform_namespace.clone();
    let replaced = |namespace: &str| namespace == platform || namespaces.contains(namespace);

    let config = &mut whole.config;
    config.version = part.config.version;
    config.platform_namespace = part.config.platform_namespace;
    config.unbounded_output_tokens = part.config.unbounded_output_tokens;
    config.shards = part.config.shards;
    replace(
        &mut config.tenants,
        part.config.tenants,
        |t| replaced(&t.namespace),
        |a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
    );
    replace(
        &mut config.providers,
        part.config.providers,
        |p| replaced(&p.namespace),
        |a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
    );
    // A rule is `<namespace>/<policy>#<index>`; the platform's may select any namespace, which
    // is why the part was given every namespace's labels.
    replace(
        &mut config.routing,
        part.config.routing,
        |rule| replaced(rule_namespace(&rule.id)),
        crate::config::CompiledRule::match_order,
    );
    replace(
        &mut whole.key_store.rows,
        part.key_store.rows,
        |row| replaced(&row.tenant_id),
        |a, b| a.id.cmp(&b.id),
    );
    replace(
        &mut whole.access_keys,
        part.access_keys,
        |secret| replaced(&secret.key.namespace),
        |a, b| a.key.cmp(&b.key),
    );
    replace(
        &mut whole.report.providers,
        part.report.providers,
        |entry| replaced(&entry.namespace),
        |a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
    );
    replace(
        &mut whole.report.tenants,
        part.report.tenants,
        |entry| replaced(&entry.namespace),
        |a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
    );
    replace(
        &mut whole.report.policies,
        part.report.policies,
        |entry| replaced(&entry.namespace),
        |a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
    );
    whole
        .access_key_conflicts
        .retain(|namespace| !replaced(namespace));
    whole.access_key_conflicts.extend(part.access_key_conflicts);
    whole.key_ring = part.key_ring;
    whole.key_ring_generated = part.key_ring_generated;
    whole.platform_problem = part.platform_problem;
    whole.tiers = part.tiers;
    whole.shards = part.shards;
}

/// The namespace of a rule id (`<namespace>/<policy>#<index>`).
fn rule_namespace(id: &str) -> &str {
    id.split_once('/').map_or(id, |(namespace, _)| namespace)
}

/// Drops the items `replaced` selects from the sorted `list` and merges in the sorted `part`.
/// The stable sort finds the two sorted runs and merges them in one pass.
fn replace<T>(
    list: &mut Vec<T>,
    part: Vec<T>,
    replaced: impl Fn(&T) -> bool,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) {
    list.retain(|item| !replaced(item));
    list.extend(part);
    list.sort_by(order);
}
