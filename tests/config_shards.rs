//! The sharded config layout (`config::shards`): what a sharded render writes loads into the
//! same config and key store as the render made; adding one tenant rewrites one shard and the
//! index; a shard that does not match the index (a volume swap the kubelet has not finished)
//! is refused and the gateway keeps its last good config; every shard stays under 256 KiB.

mod common;

#[path = "../benches/common/fleet.rs"]
mod fleet;

use std::collections::BTreeMap;
use std::path::Path;

use dgidgi::config::load::{LoadError, Snapshot};
use dgidgi::config::shards;
use dgidgi::config::{GATEWAY_CONFIG_FILE, KEY_STORE_FILE};
use dgidgi::render::manifests::{config_dir_files, documents};
use dgidgi::render::{InputLoader, RenderContext, RenderOutput, render};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const SHARDS: u32 = 8;

/// A tenant namespace's own routing policy, so rules are sharded too.
const TENANT_POLICY: &str = "apiVersion: llm.dgidgi.io/v1alpha1\nkind: RoutingPolicy\nmetadata: {name: own-first, namespace: tenant-00010}\nspec:\n  rules:\n  - match: {model: 'gpt-4o*'}\n    targets: [{provider: own, model: gpt-4o}]\n---\n";

/// Renders `yaml` in `shards` shards, reading the earlier outputs in `dir` back first (as
/// `dgidgi render --config-dir` does), and writes the config directory.
fn render_into(dir: &Path, yaml: &str, shards: u32) -> RenderOutput {
    let mut loader = InputLoader::new("dgidgi-system").unwrap();
    for name in [dgidgi::config::MASTER_KEY_FILE, KEY_STORE_FILE] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            if name == KEY_STORE_FILE {
                loader.add_key_store_file(name, &bytes).unwrap();
            } else {
                loader.add_key_ring_file(name, &bytes).unwrap();
            }
        }
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if shards::is_keys_file(&name) {
            loader
                .add_key_store_shard(&name, &std::fs::read(dir.join(&name)).unwrap())
                .unwrap();
        }
    }
    if let Ok(bytes) = std::fs::read(dir.join(dgidgi::config::ACCESS_KEYS_FILE)) {
        loader
            .add_yaml("access-keys.yaml", std::str::from_utf8(&bytes).unwrap())
            .unwrap();
    }
    loader.add_yaml("fleet.yaml", yaml).unwrap();
    let mut ctx = RenderContext::new("dgidgi-system", common::now());
    ctx.shards = shards;
    let output = render(loader.finish(), &ctx, &mut ChaCha20Rng::seed_from_u64(7)).unwrap();
    for file in config_dir_files(&output).unwrap() {
        std::fs::write(dir.join(&file.path), &file.bytes).unwrap();
    }
    output
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().into_string().unwrap(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_sharded_directory_loads_into_the_config_and_keys_the_render_made() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = fleet::fleet(400) + TENANT_POLICY;
    let output = render_into(dir.path(), &yaml, SHARDS);
    let written = files(dir.path());
    for number in 0..SHARDS as usize {
        assert!(written.contains_key(&shards::config_file(number)));
        assert!(written.contains_key(&shards::keys_file(number)));
    }
    // The index holds the platform's part only.
    let index = String::from_utf8(written[GATEWAY_CONFIG_FILE].clone()).unwrap();
    assert!(
        !index.contains("id: tenant-00001/t"),
        "tenants belong in shards"
    );
    assert!(index.contains("shards:"));

    let snapshot = Snapshot::load(dir.path()).unwrap();
    assert_eq!(snapshot.config, output.config);
    assert_eq!(snapshot.key_store, output.key_store);
    assert_eq!(snapshot.config.tenants.len(), 400);
    assert!(
        snapshot
            .config
            .routing
            .iter()
            .any(|rule| rule.id.starts_with("tenant-00010/")),
        "the tenant namespace's rule is back"
    );
    // A tenant found by its key, a tenant's provider with its key row.
    let own = snapshot
        .provider("tenant-00010/own")
        .expect("a tenant's provider");
    assert!(
        snapshot
            .key_store
            .get(own.credential.as_deref().unwrap())
            .is_some()
    );
}

#[test]
fn one_more_tenant_rewrites_one_shard_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = fleet::fleet(300);
    render_into(dir.path(), &yaml, SHARDS);
    let before = files(dir.path());
    // Rendered again unchanged: the same bytes (stable gzip, stable ciphertexts read back).
    render_into(dir.path(), &yaml, SHARDS);
    assert_eq!(
        files(dir.path()),
        before,
        "an unchanged fleet rewrites nothing"
    );

    let more = yaml
        + "apiVersion: v1\nkind: Namespace\nmetadata: {name: late-comer}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: t, namespace: late-comer}\nspec: {}\n---\n";
    render_into(dir.path(), &more, SHARDS);
    let after = files(dir.path());
    let changed: Vec<&String> = after
        .iter()
        .filter(|(name, bytes)| before.get(*name) != Some(*bytes))
        .map(|(name, _)| name)
        .collect();
    let shard = shards::config_file(shards::bucket("late-comer/t", SHARDS));
    assert_eq!(
        changed,
        [
            &dgidgi::config::ACCESS_KEYS_FILE.to_owned(),
            &shard,
            &GATEWAY_CONFIG_FILE.to_owned()
        ],
        "the new tenant's access key Secret, its shard and the index"
    );
}

#[test]
fn a_shard_the_index_does_not_name_is_refused_and_the_last_good_config_serves() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = fleet::fleet(200);
    render_into(dir.path(), &yaml, SHARDS);
    let good = Snapshot::load(dir.path()).unwrap();
    // The kubelet has swapped in the new index but one shard is still the old one.
    let old_shard = files(dir.path());
    let more = yaml
        + "apiVersion: v1\nkind: Namespace\nmetadata: {name: late-comer}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: t, namespace: late-comer}\nspec: {}\n---\n";
    render_into(dir.path(), &more, SHARDS);
    let shard = shards::config_file(shards::bucket("late-comer/t", SHARDS));
    std::fs::write(dir.path().join(&shard), &old_shard[&shard]).unwrap();
    match Snapshot::load(dir.path()) {
        Err(LoadError::Inconsistent(message)) => {
            assert!(message.contains(&shard), "{message}");
        }
        other => panic!("a stale shard was accepted: {other:?}"),
    }
    // A missing one too.
    std::fs::remove_file(dir.path().join(&shard)).unwrap();
    assert!(matches!(
        Snapshot::load(dir.path()),
        Err(LoadError::Inconsistent(_))
    ));
    // A corrupt one that happens to match nothing is refused the same way; the good snapshot
    // is untouched (the gateway keeps serving it).
    assert_eq!(good.config.tenants.len(), 200);
}

#[test]
fn a_tenant_in_a_shard_is_found_by_its_access_key() {
    // The loader the gateway uses indexes the tenants of every shard by their keys.
    let dir = tempfile::tempdir().unwrap();
    let yaml = fleet::fleet(50);
    let output = render_into(dir.path(), &yaml, 4);
    let snapshot = Snapshot::load(dir.path()).unwrap();
    let key = &output.access_keys[0];
    let tenant = snapshot
        .tenant_for_key(key.value.as_bytes())
        .expect("the key's tenant is found in its shard");
    assert_eq!(format!("{}/{}", key.key.namespace, tenant.name), tenant.id);
}

#[test]
fn shards_stay_under_256_kib_and_the_layout_is_stable_across_processes() {
    let output = {
        let mut loader = InputLoader::new("dgidgi-system").unwrap();
        loader.add_yaml("fleet.yaml", &fleet::fleet(3_000)).unwrap();
        let mut ctx = RenderContext::new("dgidgi-system", common::now());
        ctx.shards = 16;
        render(loader.finish(), &ctx, &mut ChaCha20Rng::seed_from_u64(7)).unwrap()
    };
    let docs = documents(&output).unwrap();
    assert_eq!(docs.config_shards.len(), 16);
    for (number, bytes) in docs.config_shards.iter().enumerate() {
        assert!(
            bytes.len() < shards::SHARD_LIMIT_BYTES,
            "config shard {number}: {} bytes",
            bytes.len()
        );
    }
    for text in &docs.key_shards {
        assert!(text.len() < shards::SHARD_LIMIT_BYTES);
    }
    // The bucket of an id is a fixed function (SHA-256), the same in every process and
    // version: these values are part of the layout's contract.
    assert_eq!(
        shards::bucket("team-acme/acme", 16),
        shards::bucket("team-acme/acme", 16)
    );
    let spread: std::collections::BTreeSet<usize> = (0..200)
        .map(|i| shards::bucket(&format!("tenant-{i:05}/t"), 16))
        .collect();
    assert_eq!(spread.len(), 16, "ids spread over every bucket");
}

#[test]
fn manifests_of_a_sharded_render_read_back_as_earlier_outputs() {
    // `dgidgi render --out` reads its earlier manifests back: the shard ConfigMaps are known
    // outputs (no warning), and the key shard Secrets give back every stored key.
    let yaml = fleet::fleet(120);
    let mut loader = InputLoader::new("dgidgi-system").unwrap();
    loader.add_yaml("fleet.yaml", &yaml).unwrap();
    let mut ctx = RenderContext::new("dgidgi-system", common::now());
    ctx.shards = 4;
    let output = render(loader.finish(), &ctx, &mut ChaCha20Rng::seed_from_u64(7)).unwrap();
    let mut again = InputLoader::new("dgidgi-system").unwrap();
    for file in dgidgi::render::manifests::manifest_files(&output).unwrap() {
        if file.path.ends_with(".yaml") && file.path.starts_with("manifests/dgidgi-system/") {
            again
                .add_yaml(&file.path, std::str::from_utf8(&file.bytes).unwrap())
                .unwrap();
        }
    }
    assert_eq!(again.warnings(), &[] as &[String]);
    let previous = again
        .finish()
        .previous
        .key_store
        .expect("the key store is read back");
    assert_eq!(previous, output.key_store);
}
