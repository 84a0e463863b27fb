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

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::RenderOutput;

/// Replaces, in `whole`, everything of the platform namespace and of `namespaces` with `part`,
/// a render of the platform namespace, every namespace's labels and the objects of
/// `namespaces` (and nothing else). Every list keeps render's order.
pub fn splice(whole: &mut RenderOutput, part: RenderOutput, namespaces: &BTreeSet<String>) {
    let platform = part.config.platform_namespace.clone();
    let replaced = |namespace: &str| namespace == platform || namespaces.contains(namespace);
    let mut groups: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    groups.push(&platform);
    groups.sort_unstable();
    groups.dedup();
    // Row ids are `<namespace>/<name>`, sorted as strings: a namespace's rows are the run of
    // ids starting with its name and a slash.
    let mut prefixes: Vec<String> = groups.iter().map(|ns| format!("{ns}/")).collect();
    prefixes.sort_unstable();
    let by_namespace = |namespace: &str, group: &str| namespace.cmp(group);
    let by_prefix = |id: &str, prefix: &str| {
        if id.starts_with(prefix) {
            Ordering::Equal
        } else {
            id.cmp(prefix)
        }
    };

    let config = &mut whole.config;
    config.version = part.config.version;
    config.platform_namespace = part.config.platform_namespace;
    config.unbounded_output_tokens = part.config.unbounded_output_tokens;
    config.shards = part.config.shards;
    replace(
        &mut config.tenants,
        part.config.tenants,
        &groups,
        |t, group| by_namespace(&t.namespace, group),
        |a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
    );
    replace(
        &mut config.providers,
        part.config.providers,
        &groups,
        |p, group| by_namespace(&p.namespace, group),
        |a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
    );
    // Rules are in match order, not by namespace: dropped and merged. A rule is
    // `<namespace>/<policy>#<index>`; the platform's may select any namespace, which is why the
    // part was given every namespace's labels.
    config
        .routing
        .retain(|rule| !replaced(rule.policy_namespace()));
    config.routing.extend(part.config.routing);
    config
        .routing
        .sort_by(crate::config::CompiledRule::match_order);
    replace(
        &mut whole.key_store.rows,
        part.key_store.rows,
        &prefixes,
        |row, prefix| by_prefix(&row.id, prefix),
        |a, b| a.id.cmp(&b.id),
    );
    replace(
        &mut whole.access_keys,
        part.access_keys,
        &groups,
        |secret, group| by_namespace(&secret.key.namespace, group),
        |a, b| a.key.cmp(&b.key),
    );
    replace(
        &mut whole.report.providers,
        part.report.providers,
        &groups,
        |entry, group| by_namespace(&entry.namespace, group),
        |a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
    );
    replace(
        &mut whole.report.tenants,
        part.report.tenants,
        &groups,
        |entry, group| by_namespace(&entry.namespace, group),
        |a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)),
    );
    replace(
        &mut whole.report.policies,
        part.report.policies,
        &groups,
        |entry, group| by_namespace(&entry.namespace, group),
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

/// Above this many groups, one merge of the whole list beats replacing run by run.
const MANY_GROUPS: usize = 16;

/// Replaces, in the sorted `list`, each group's run with its run in the sorted `part` (which
/// holds those groups' items only). `locate(item, group)` places an item before (`Less`), in
/// (`Equal`) or after (`Greater`) a group, whose items are contiguous in `order`; `groups` are
/// in that order. A few groups are replaced in place (a move of the tail each), many by one
/// merge.
fn replace<T>(
    list: &mut Vec<T>,
    part: Vec<T>,
    groups: &[impl AsRef<str>],
    locate: impl Fn(&T, &str) -> Ordering,
    order: impl Fn(&T, &T) -> Ordering,
) {
    // Groups are in the list's order, so an item's group is found by halves.
    let in_a_group = |item: &T| {
        groups
            .binary_search_by(|group| locate(item, group.as_ref()).reverse())
            .is_ok()
    };
    if groups.len() > MANY_GROUPS {
        list.retain(|item| !in_a_group(item));
        list.extend(part);
        // The stable sort finds the two sorted runs and merges them in one pass.
        list.sort_by(order);
        return;
    }
    let mut part = part.into_iter().peekable();
    let mut from = 0;
    for group in groups {
        let group = group.as_ref();
        let start =
            from + list[from..].partition_point(|item| locate(item, group) == Ordering::Less);
        let end =
            start + list[start..].partition_point(|item| locate(item, group) == Ordering::Equal);
        let mut run = Vec::new();
        while let Some(item) = part.next_if(|item| locate(item, group) == Ordering::Equal) {
            run.push(item);
        }
        from = start + run.len();
        list.splice(start..end, run);
    }
    // Nothing is left over when the part holds only those groups, in order; if it ever did
    // not, merging the rest keeps every item and the order.
    let rest: Vec<T> = part.collect();
    debug_assert!(
        rest.is_empty(),
        "a spliced part held items outside its groups"
    );
    if !rest.is_empty() {
        list.extend(rest);
        list.sort_by(order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of replacing (run by run, and one merge past [`MANY_GROUPS`]) give what
    /// dropping the groups' items, adding the part's and sorting gives, for lists ordered by
    /// namespace and by `<namespace>/<name>` id (where `a-b/x` sorts before `a/x`).
    #[test]
    fn replacing_groups_equals_dropping_adding_and_sorting() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let namespaces = [
            "a", "a-b", "a.c", "b", "ba", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
            "n", "o", "p", "q", "r", "s", "t",
        ];
        for round in 0..200 {
            let item = |rng: &mut rand_chacha::ChaCha20Rng| {
                let ns = namespaces[rng.random_range(0..namespaces.len())];
                format!("{ns}/{}", rng.random_range(0..5))
            };
            let mut list: Vec<String> = (0..rng.random_range(0..60))
                .map(|_| item(&mut rng))
                .collect();
            let count = if round % 2 == 0 {
                rng.random_range(1..4)
            } else {
                MANY_GROUPS + 2
            };
            let mut groups: Vec<&str> = (0..count)
                .map(|_| namespaces[rng.random_range(0..namespaces.len())])
                .collect();
            groups.sort_unstable();
            groups.dedup();
            let mut part: Vec<String> = (0..rng.random_range(0..20))
                .map(|_| item(&mut rng))
                .filter(|id| groups.contains(&id.split_once('/').unwrap().0))
                .collect();
            for by_id in [false, true] {
                let namespace = |id: &String| id.split_once('/').unwrap().0.to_owned();
                let order = |a: &String, b: &String| {
                    if by_id {
                        a.cmp(b)
                    } else {
                        (namespace(a), a).cmp(&(namespace(b), b))
                    }
                };
                list.sort_by(order);
                list.dedup();
                part.sort_by(order);
                part.dedup();
                let mut expected = list.clone();
                expected.retain(|id| !groups.contains(&namespace(id).as_str()));
                expected.extend(part.clone());
                expected.sort_by(order);
                let mut got = list.clone();
                if by_id {
                    let mut prefixes: Vec<String> =
                        groups.iter().map(|g| format!("{g}/")).collect();
                    prefixes.sort_unstable();
                    replace(
                        &mut got,
                        part.clone(),
                        &prefixes,
                        |id, prefix| {
                            if id.starts_with(prefix) {
                                Ordering::Equal
                            } else {
                                id.as_str().cmp(prefix)
                            }
                        },
                        order,
                    );
                } else {
                    replace(
                        &mut got,
                        part.clone(),
                        &groups,
                        |id, group| namespace(id).as_str().cmp(group),
                        order,
                    );
                }
                assert_eq!(got, expected, "groups {groups:?}, by id: {by_id}");
            }
        }
    }
}
