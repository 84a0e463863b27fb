//! Turning a [`RenderOutput`] into files: Kubernetes manifests (`--out`) or the gateway's config
//! directory (`--config-dir`). Pure: returns paths and bytes; the CLI writes them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use super::{AccessKeySecret, RenderError, RenderOutput};
use crate::config::shards;
use crate::config::{
    ACCESS_KEY_DATA_KEY, ACCESS_KEYS_FILE, CONFIG_MAP_NAME, GATEWAY_CONFIG_FILE, KEY_STORE_FILE,
    KEY_STORE_SECRET_NAME, MASTER_KEY_FILE, MASTER_KEY_SECRET_NAME,
};
use crate::crd::API_VERSION;

/// Label marking every object dgidgi renders, so stale outputs can be recognised and pruned.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "dgidgi";
/// Annotation on the ConfigMap with the SHA-256 of the config, for rollouts and quick diffs.
pub const CONFIG_HASH_ANNOTATION: &str = "llm.dgidgi.io/config-sha256";
/// The gateway ConfigMap's record of the tiers its config was rendered with (JSON of
/// [`crate::render::TierTable`]). The operator keeps the last good platform configuration in
/// memory; this is where one that restarts while the platform configuration is invalid finds
/// it, instead of rendering nothing until the configuration is fixed.
pub const TIERS_ANNOTATION: &str = "llm.dgidgi.io/tiers-in-force";
/// The largest record of the tiers kept in [`TIERS_ANNOTATION`].
const TIERS_ANNOTATION_MAX_BYTES: usize = 64 * 1024;
/// Label on access key Secrets naming their LlmTenant.
pub const TENANT_LABEL: &str = "llm.dgidgi.io/tenant";
/// Name of the status output file under `--out` (beside, not inside, the manifests directory,
/// so `kubectl apply -R -f <out>/manifests` applies only Kubernetes objects).
pub const STATUS_FILE: &str = "status.yaml";
/// Directory under `--out` holding one manifest per object.
pub const MANIFESTS_DIR: &str = "manifests";

/// One file to write.
#[derive(Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Path relative to the output directory.
    pub path: String,
    /// Content.
    pub bytes: Vec<u8>,
    /// Whether it holds key material (written 0600).
    pub private: bool,
}

impl std::fmt::Debug for OutputFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputFile")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .field("private", &self.private)
            .finish()
    }
}

/// The serialized documents every output form shares.
pub struct Documents {
    /// gateway.yaml (in a sharded layout, the index naming the shards).
    pub gateway_config: String,
    /// keys.yaml (in a sharded layout, the platform's rows).
    pub key_store: String,
    /// master-key.yaml.
    pub key_ring: String,
    /// The shards, in bucket order (empty in the single-file layout).
    pub config_shards: Vec<Vec<u8>>,
    /// The key store shards, in bucket order (empty in the single-file layout).
    pub key_shards: Vec<String>,
}

/// Serializes the config, key store and key ring, split into the render's shard count.
pub fn documents(output: &RenderOutput) -> Result<Documents, RenderError> {
    Ok(documents_reusing(output, None)?.0)
}

/// [`documents`], serializing again only the shards in `reuse`'s set of changed buckets and
/// taking the others from its previous files (the operator's last pass); also returns the
/// files, for the next call.
pub fn documents_reusing(
    output: &RenderOutput,
    reuse: Option<(&shards::Encoded, &std::collections::BTreeSet<usize>)>,
) -> Result<(Documents, Option<shards::Encoded>), RenderError> {
    if output.shards <= 1 {
        return Ok((single_file_documents(output)?, None));
    }
    let only = reuse.map(|(_, changed)| changed);
    let split = shards::split_buckets(&output.config, &output.key_store, output.shards, only)?;
    let encoded = shards::encode(&split, reuse)?;
    let docs = Documents {
        gateway_config: encoded.index.clone(),
        key_store: encoded.index_keys.clone(),
        key_ring: output.key_ring.to_yaml()?,
        config_shards: encoded.config.clone(),
        key_shards: encoded.keys.clone(),
    };
    Ok((docs, Some(encoded)))
}

fn single_file_documents(output: &RenderOutput) -> Result<Documents, RenderError> {
    Ok(Documents {
        gateway_config: serde_yaml::to_string(&output.config).map_err(|source| {
            RenderError::Serialize {
                what: "the gateway config",
                source,
            }
        })?,
        key_store: output.key_store.to_yaml()?,
        key_ring: output.key_ring.to_yaml()?,
        config_shards: Vec::new(),
        key_shards: Vec::new(),
    })
}

fn labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "dgidgi".to_owned()),
    ]);
    labels.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    labels
}

fn meta(namespace: &str, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

fn secret(meta: ObjectMeta, key: &str, value: &[u8]) -> Secret {
    Secret {
        metadata: meta,
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The ConfigMap with the gateway config.
pub fn config_map(output: &RenderOutput, docs: &Documents) -> ConfigMap {
    let mut metadata = meta(
        &output.config.platform_namespace,
        CONFIG_MAP_NAME,
        labels(&[("app.kubernetes.io/component", "gateway-config")]),
    );
    let mut annotations = BTreeMap::from([(
        CONFIG_HASH_ANNOTATION.to_owned(),
        hex::encode(Sha256::digest(docs.gateway_config.as_bytes())),
    )]);
    // A table of numbers and strings always serializes; were it ever not to, or were it past
    // the bound (an object's annotations hold 256 KiB in all, and a write past that would stop
    // every config update), the ConfigMap is still written, only without the record (an
    // operator restarting on an invalid configuration then holds, as without one).
    match serde_json::to_string(&output.tiers) {
        Ok(tiers) if tiers.len() <= TIERS_ANNOTATION_MAX_BYTES => {
            annotations.insert(TIERS_ANNOTATION.to_owned(), tiers);
        }
        Ok(tiers) => tracing::warn!(
            bytes = tiers.len(),
            "the tiers in force are too large to record on the gateway ConfigMap"
        ),
        Err(error) => tracing::warn!(%error, "could not record the tiers in force"),
    }
    metadata.annotations = Some(annotations);
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(
            GATEWAY_CONFIG_FILE.to_owned(),
            docs.gateway_config.clone(),
        )])),
        ..ConfigMap::default()
    }
}

/// The ConfigMaps of the config shards (`binaryData`, compressed), in bucket order.
pub fn config_shard_maps(output: &RenderOutput, docs: &Documents) -> Vec<ConfigMap> {
    docs.config_shards
        .iter()
        .enumerate()
        .map(|(number, bytes)| ConfigMap {
            metadata: meta(
                &output.config.platform_namespace,
                &shards::config_map_name(number),
                labels(&[("app.kubernetes.io/component", "gateway-config")]),
            ),
            binary_data: Some(BTreeMap::from([(
                shards::config_file(number),
                ByteString(bytes.clone()),
            )])),
            ..ConfigMap::default()
        })
        .collect()
}

/// The Secrets of the key store shards, in bucket order.
pub fn key_store_shard_secrets(output: &RenderOutput, docs: &Documents) -> Vec<Secret> {
    docs.key_shards
        .iter()
        .enumerate()
        .map(|(number, text)| {
            secret(
                meta(
                    &output.config.platform_namespace,
                    &shards::keys_secret_name(number),
                    labels(&[("app.kubernetes.io/component", "key-store")]),
                ),
                &shards::keys_file(number),
                text.as_bytes(),
            )
        })
        .collect()
}

/// The key store Secret.
pub fn key_store_secret(output: &RenderOutput, docs: &Documents) -> Secret {
    secret(
        meta(
            &output.config.platform_namespace,
            KEY_STORE_SECRET_NAME,
            labels(&[("app.kubernetes.io/component", "key-store")]),
        ),
        KEY_STORE_FILE,
        docs.key_store.as_bytes(),
    )
}

/// The master key ring Secret.
pub fn key_ring_secret(output: &RenderOutput, docs: &Documents) -> Secret {
    secret(
        meta(
            &output.config.platform_namespace,
            MASTER_KEY_SECRET_NAME,
            labels(&[("app.kubernetes.io/component", "master-key")]),
        ),
        MASTER_KEY_FILE,
        docs.key_ring.as_bytes(),
    )
}

/// A tenant's access key Secret, owned by its LlmTenant when the uid is known.
pub fn access_key_secret(access: &AccessKeySecret) -> Secret {
    let mut metadata = meta(
        &access.key.namespace,
        &access.key.name,
        labels(&[
            ("app.kubernetes.io/component", "access-key"),
            (TENANT_LABEL, &access.tenant),
            ("llm.dgidgi.io/access-key", &access.key_name),
        ]),
    );
    metadata.owner_references = access.owner_uid.as_ref().map(|uid| {
        vec![OwnerReference {
            api_version: API_VERSION.to_owned(),
            kind: "LlmTenant".to_owned(),
            name: access.tenant.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    secret(metadata, ACCESS_KEY_DATA_KEY, access.value.as_bytes())
}

fn yaml<T: serde::Serialize>(object: &T, what: &'static str) -> Result<Vec<u8>, RenderError> {
    serde_yaml::to_string(object)
        .map(String::into_bytes)
        .map_err(|source| RenderError::Serialize { what, source })
}

/// Manifests for `--out`: `manifests/<namespace>/<kind>-<name>.yaml` per object, plus
/// `status.yaml`.
pub fn manifest_files(output: &RenderOutput) -> Result<Vec<OutputFile>, RenderError> {
    manifest_files_of(output, &documents(output)?)
}

/// [`manifest_files`] of documents already serialized (the CLI serializes them once for every
/// output and check).
pub fn manifest_files_of(
    output: &RenderOutput,
    docs: &Documents,
) -> Result<Vec<OutputFile>, RenderError> {
    let platform = &output.config.platform_namespace;
    let mut files = vec![
        OutputFile {
            path: format!("{MANIFESTS_DIR}/{platform}/configmap-{CONFIG_MAP_NAME}.yaml"),
            bytes: yaml(&config_map(output, docs), "the ConfigMap")?,
            private: false,
        },
        OutputFile {
            path: format!("{MANIFESTS_DIR}/{platform}/secret-{KEY_STORE_SECRET_NAME}.yaml"),
            bytes: yaml(&key_store_secret(output, docs), "the key store Secret")?,
            private: true,
        },
        OutputFile {
            path: format!("{MANIFESTS_DIR}/{platform}/secret-{MASTER_KEY_SECRET_NAME}.yaml"),
            bytes: yaml(&key_ring_secret(output, docs), "the master key Secret")?,
            private: true,
        },
    ];
    // The shards: ConfigMaps, then the key store's Secrets.
    let maps = config_shard_maps(output, docs).into_iter().map(|map| {
        Ok::<_, RenderError>((
            "configmap",
            map.metadata.name.clone(),
            yaml(&map, "a config shard")?,
            false,
        ))
    });
    let secrets = key_store_shard_secrets(output, docs)
        .into_iter()
        .map(|shard| {
            Ok((
                "secret",
                shard.metadata.name.clone(),
                yaml(&shard, "a key store shard")?,
                true,
            ))
        });
    for shard in maps.chain(secrets) {
        let (kind, name, bytes, private) = shard?;
        files.push(OutputFile {
            path: format!(
                "{MANIFESTS_DIR}/{platform}/{kind}-{}.yaml",
                name.unwrap_or_default()
            ),
            bytes,
            private,
        });
    }
    for access in &output.access_keys {
        files.push(OutputFile {
            path: format!(
                "{MANIFESTS_DIR}/{}/secret-{}.yaml",
                access.key.namespace, access.key.name
            ),
            bytes: yaml(&access_key_secret(access), "an access key Secret")?,
            private: true,
        });
    }
    files.push(OutputFile {
        path: STATUS_FILE.to_owned(),
        bytes: yaml(&output.report, "the status report")?,
        private: false,
    });
    Ok(files)
}

/// Files for `--config-dir`: what the gateway loads (the same bytes as the ConfigMap and Secret
/// data), plus the access key Secrets so the next offline render keeps them.
pub fn config_dir_files(output: &RenderOutput) -> Result<Vec<OutputFile>, RenderError> {
    let (docs, access_keys) = documents_and_access_keys(output)?;
    config_dir_files_of(&docs, access_keys)
}

/// The documents and the access keys file, serialized on two threads: the two large texts of a
/// config directory, each linear in tenants.
pub fn documents_and_access_keys(
    output: &RenderOutput,
) -> Result<(Documents, Vec<u8>), RenderError> {
    let (docs, access_keys) = std::thread::scope(|scope| {
        let access_keys = std::thread::Builder::new()
            .name("render-access-keys".into())
            .spawn_scoped(scope, || access_keys_yaml(output));
        let docs = documents(output);
        let access_keys = match access_keys {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had (a process at its limit): the same work, one after the other.
            Err(_) => access_keys_yaml(output),
        };
        (docs, access_keys)
    });
    Ok((docs?, access_keys?))
}

/// The access key Secrets as one `List` (what a config directory keeps of them), written as
/// JSON, one Secret a line: JSON is YAML (anything that reads the file as YAML still can), and
/// at 100,000 tenants the 200,000 Secrets took seconds to write and read back as YAML.
pub fn access_keys_yaml(output: &RenderOutput) -> Result<Vec<u8>, RenderError> {
    let failed = |error: serde_json::Error| RenderError::Json {
        what: "the access keys",
        message: error.to_string(),
    };
    let mut out = b"{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[".to_vec();
    for (number, access) in output.access_keys.iter().enumerate() {
        out.extend_from_slice(if number == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut out, &access_key_secret(access)).map_err(failed)?;
    }
    out.extend_from_slice(b"\n]}\n");
    Ok(out)
}

/// [`config_dir_files`] of documents and access keys already serialized.
pub fn config_dir_files_of(
    docs: &Documents,
    access_keys: Vec<u8>,
) -> Result<Vec<OutputFile>, RenderError> {
    // Order matters for a gateway watching the directory: key material first, config last, so
    // the config never refers to a row that is not there yet; the shards before the index that
    // names them.
    let mut files: Vec<OutputFile> = docs
        .key_shards
        .iter()
        .enumerate()
        .map(|(number, text)| OutputFile {
            path: shards::keys_file(number),
            bytes: text.clone().into_bytes(),
            private: true,
        })
        .chain(
            docs.config_shards
                .iter()
                .enumerate()
                .map(|(number, bytes)| OutputFile {
                    path: shards::config_file(number),
                    bytes: bytes.clone(),
                    private: false,
                }),
        )
        .collect();
    files.extend([
        OutputFile {
            path: MASTER_KEY_FILE.to_owned(),
            bytes: docs.key_ring.clone().into_bytes(),
            private: true,
        },
        OutputFile {
            path: KEY_STORE_FILE.to_owned(),
            bytes: docs.key_store.clone().into_bytes(),
            private: true,
        },
        OutputFile {
            path: ACCESS_KEYS_FILE.to_owned(),
            bytes: access_keys,
            private: true,
        },
        OutputFile {
            path: GATEWAY_CONFIG_FILE.to_owned(),
            bytes: docs.gateway_config.clone().into_bytes(),
            private: false,
        },
    ]);
    Ok(files)
}
