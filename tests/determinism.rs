//! Determinism and key lifecycle: outputs given back give byte-identical outputs; a changed key
//! re-encrypts only its row; a new master key is rolled in while old rows keep decrypting.

mod common;

use std::path::Path;

use dgidgi::crypto::keystore::open;
use dgidgi::render::RenderOutput;
use dgidgi::render::manifests::{config_dir_files, manifest_files};
use k8s_openapi::jiff::Timestamp;

fn quickstart_texts() -> Vec<(String, String)> {
    common::read_dir_texts(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"))
}

/// The previous outputs as YAML texts, as `dgidgi render -f OUT` would read them.
fn outputs_as_texts(output: &RenderOutput) -> Vec<(String, String)> {
    manifest_files(output)
        .unwrap()
        .into_iter()
        .map(|f| {
            (
                format!("out/{}", f.path),
                String::from_utf8(f.bytes).unwrap(),
            )
        })
        .collect()
}

fn render_with(inputs: &[(String, String)], seed: u64, at: Timestamp) -> RenderOutput {
    let pairs: Vec<(&str, &str)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    common::render_texts_at(&pairs, seed, at)
}

fn later() -> Timestamp {
    Timestamp::from_second(common::NOW + 86_400).unwrap()
}

#[test]
fn rendering_with_previous_outputs_is_byte_identical() {
    let inputs = quickstart_texts();
    let first = render_with(&inputs, 1, common::now());
    let mut again = inputs.clone();
    again.extend(outputs_as_texts(&first));
    // Other randomness and another day: nothing may change.
    let second = render_with(&again, 2, later());
    assert_eq!(
        manifest_files(&first).unwrap(),
        manifest_files(&second).unwrap()
    );
    assert_eq!(
        config_dir_files(&first).unwrap(),
        config_dir_files(&second).unwrap()
    );
    // And once more from the second's outputs.
    let mut third_inputs = inputs.clone();
    third_inputs.extend(outputs_as_texts(&second));
    let third = render_with(&third_inputs, 3, later());
    assert_eq!(
        manifest_files(&second).unwrap(),
        manifest_files(&third).unwrap()
    );
}

fn replace_in(inputs: &mut [(String, String)], from: &str, to: &str) {
    let mut hit = false;
    for (_, text) in inputs.iter_mut() {
        if text.contains(from) {
            *text = text.replace(from, to);
            hit = true;
        }
    }
    assert!(hit, "{from} not found in inputs");
}

#[test]
fn a_changed_provider_key_re_encrypts_only_its_row() {
    let mut inputs = quickstart_texts();
    let first = render_with(&inputs, 1, common::now());
    replace_in(
        &mut inputs,
        "sk-quickstart-placeholder-openai",
        "sk-rotated-openai-key-0001",
    );
    inputs.extend(outputs_as_texts(&first));
    let second = render_with(&inputs, 2, later());

    for (old, new) in first.key_store.rows.iter().zip(&second.key_store.rows) {
        if old.id == "dgidgi-system/openai" {
            assert_ne!(old.encrypted_value, new.encrypted_value);
            assert_eq!(new.created_at, old.created_at);
            assert_eq!(new.rotated_at.as_deref(), Some("2026-11-26T12:00:00Z"));
            let plain = open(&second.key_ring, new.into(), &new.encrypted_value).unwrap();
            assert_eq!(plain.api_key().unwrap(), b"sk-rotated-openai-key-0001");
        } else {
            assert_eq!(old, new, "row {} must be untouched", old.id);
        }
    }
}

#[test]
fn a_new_master_key_is_rolled_in_while_old_rows_keep_decrypting() {
    let inputs = quickstart_texts();
    let first = render_with(&inputs, 1, common::now());
    // The documented procedure: append a key to the ring and make it active.
    let ring_yaml = first.key_ring.to_yaml().unwrap();
    let rolled = format!(
        "{}\n- id: k2\n  key: {}\n",
        ring_yaml.trim_end().replace("active: k1", "active: k2"),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    );
    let mut again = inputs.clone();
    for (name, text) in outputs_as_texts(&first) {
        if name.ends_with("secret-dgidgi-master-key.yaml") {
            continue;
        }
        again.push((name, text));
    }
    again.push((
        "ring.yaml".into(),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: dgidgi-master-key, namespace: dgidgi-system}}\nstringData:\n  master-key.yaml: |\n{}",
            rolled.lines().map(|l| format!("    {l}\n")).collect::<String>()
        ),
    ));
    // A new provider arrives after the roll.
    again.push((
        "new.yaml".into(),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: groq-key, namespace: dgidgi-system}\nstringData: {apiKey: gsk-new-0001}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: groq, namespace: dgidgi-system}\nspec: {type: groq, credentialsRef: {name: groq-key}}\n".into(),
    ));
    let second = render_with(&again, 2, later());
    assert_eq!(second.key_ring.active().id, "k2");
    for row in &second.key_store.rows {
        if row.id == "dgidgi-system/groq" {
            assert!(row.encrypted_value.starts_with("dgv1:k2:"));
        } else {
            let old = first.key_store.get(&row.id).unwrap();
            assert_eq!(row, old, "old rows keep their k1 ciphertext byte for byte");
            assert!(row.encrypted_value.starts_with("dgv1:k1:"));
        }
        assert!(
            open(&second.key_ring, row.into(), &row.encrypted_value).is_ok(),
            "{} decrypts",
            row.id
        );
    }
}

#[test]
fn a_ciphertext_moved_between_tenants_does_not_survive() {
    let inputs = quickstart_texts();
    let first = render_with(&inputs, 1, common::now());
    let globex = first
        .key_store
        .get("team-globex/my-openai")
        .unwrap()
        .encrypted_value
        .clone();
    let platform = first
        .key_store
        .get("dgidgi-system/openai")
        .unwrap()
        .encrypted_value
        .clone();
    // Tamper with the key store: give the platform row the tenant's ciphertext.
    let mut again = inputs.clone();
    for (name, text) in outputs_as_texts(&first) {
        if name.ends_with("secret-dgidgi-gateway-keys.yaml") {
            let store = first
                .key_store
                .to_yaml()
                .unwrap()
                .replace(&platform, &globex);
            again.push((
                name,
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata: {{name: dgidgi-gateway-keys, namespace: dgidgi-system}}\nstringData:\n  keys.yaml: |\n{}",
                    store.lines().map(|l| format!("    {l}\n")).collect::<String>()
                ),
            ));
        } else {
            again.push((name, text));
        }
    }
    let second = render_with(&again, 2, later());
    let row = second.key_store.get("dgidgi-system/openai").unwrap();
    assert_ne!(
        row.encrypted_value, globex,
        "the moved ciphertext was detected and replaced"
    );
    let plain = open(&second.key_ring, row.into(), &row.encrypted_value).unwrap();
    assert_eq!(
        plain.api_key().unwrap(),
        b"sk-quickstart-placeholder-openai"
    );
    // The tenant's own ciphertext cannot be opened as the platform row.
    assert!(open(&second.key_ring, row.into(), &globex).is_err());
}

#[test]
fn a_removed_provider_loses_its_row() {
    let inputs: Vec<_> = quickstart_texts()
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                t.replace(
                    "name: my-openai\n  namespace: team-globex",
                    "name: renamed\n  namespace: team-globex",
                ),
            )
        })
        .collect();
    let out = render_with(&inputs, 1, common::now());
    assert!(out.key_store.get("team-globex/my-openai").is_none());
    assert!(out.key_store.get("team-globex/renamed").is_some());
}

#[test]
fn rotating_one_part_of_a_cloud_credential_re_seals_its_row_and_only_its_row() {
    let mut inputs =
        common::read_dir_texts(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clouds"));
    let first = render_with(&inputs, 1, common::now());
    // Rendered again unchanged (from its own outputs): no row moves.
    let mut unchanged = inputs.clone();
    unchanged.extend(outputs_as_texts(&first));
    let again = render_with(&unchanged, 2, later());
    assert_eq!(first.key_store.rows, again.key_store.rows);
    // Only the secret access key of the Bedrock credential changes.
    replace_in(
        &mut inputs,
        "placeholder/secret/access/key/000000000000",
        "rotated/secret/access/key/111111111111",
    );
    inputs.extend(outputs_as_texts(&first));
    let second = render_with(&inputs, 3, later());
    for (old, new) in first.key_store.rows.iter().zip(&second.key_store.rows) {
        if old.id == "dgidgi-system/bedrock" {
            assert_ne!(old.encrypted_value, new.encrypted_value);
            assert_eq!(new.rotated_at.as_deref(), Some("2026-11-26T12:00:00Z"));
            let plain = open(&second.key_ring, new.into(), &new.encrypted_value).unwrap();
            assert_eq!(
                plain.part("secretAccessKey").unwrap(),
                b"rotated/secret/access/key/111111111111"
            );
            assert_eq!(plain.part("accessKeyId").unwrap(), b"AKIAPLACEHOLDER00000");
        } else {
            assert_eq!(old, new, "row {} must be untouched", old.id);
        }
    }
}
