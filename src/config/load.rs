//! Loading a rendered config directory (as `dgidgi render --config-dir` writes it, or as
//! Kubernetes mounts the ConfigMap and Secrets, files behind `..data` links): parse, check that
//! it hangs together, and index it for the request path. A directory that fails any check is
//! refused as a whole, so a gateway keeps serving its last good config.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{
    CONFIG_VERSION, GATEWAY_CONFIG_FILE, GatewayConfig, KEY_STORE_FILE, MASTER_KEY_FILE,
    ProviderConfig, TenantConfig, shards,
};
use crate::crypto::{CryptoError, KeyRing, KeyStore};
use crate::redact;

/// Why a config directory was refused. Messages name files and ids, never key material.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `gateway.yaml` does not parse.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (values redacted).
        message: String,
    },
    /// The config was rendered for another format version.
    #[error(
        "{path}: config version {found} is not supported (this gateway reads version {CONFIG_VERSION})"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The key ring or key store is corrupt.
    #[error("{path}: {source}")]
    Keys {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: CryptoError,
    },
    /// The config does not hang together.
    #[error("inconsistent config: {0}")]
    Inconsistent(String),
}

/// A loaded, checked and indexed config: what one request is served with from start to end.
#[derive(Debug)]
pub struct Snapshot {
    /// The config.
    pub config: GatewayConfig,
    /// The key store rows (sealed; decrypted only when a request needs a key).
    pub key_store: KeyStore,
    /// The master key ring.
    pub key_ring: KeyRing,
    /// SHA-256 over the three files, to tell a changed directory from an unchanged one.
    pub fingerprint: [u8; 32],
    /// Looked up on every request: hashbrown's map hashes with foldhash, several times cheaper
    /// than the standard SipHash and seeded per process (the keys are SHA-256 digests no
    /// client steers and the config's provider ids; see `metering::book`).
    tenants_by_key: hashbrown::HashMap<[u8; 32], usize>,
    providers_by_id: hashbrown::HashMap<String, usize>,
}

/// The raw bytes of a config directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFiles {
    /// `gateway.yaml` (in a sharded layout, the index).
    pub gateway: Vec<u8>,
    /// `keys.yaml`.
    pub keys: Vec<u8>,
    /// `master-key.yaml`.
    pub master_key: Vec<u8>,
    /// The shard files present (`config-NNN.json.gz`, `keys-NNN.yaml`), by name; which of
    /// them count is the index's to say.
    pub shards: BTreeMap<String, Vec<u8>>,
}

impl ConfigFiles {
    /// Reads the files of `dir` (following links, as Kubernetes volume mounts need).
    pub fn read(dir: &Path) -> Result<Self, LoadError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| LoadError::Read { path, source })
        };
        let listing = std::fs::read_dir(dir).map_err(|source| LoadError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let mut shards = BTreeMap::new();
        for entry in listing {
            let entry = entry.map_err(|source| LoadError::Read {
                path: dir.to_owned(),
                source,
            })?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if shards::is_shard_file(&name) {
                let bytes = read(&name)?;
                shards.insert(name, bytes);
            }
        }
        Ok(Self {
            gateway: read(GATEWAY_CONFIG_FILE)?,
            keys: read(KEY_STORE_FILE)?,
            master_key: read(MASTER_KEY_FILE)?,
            shards,
        })
    }

    /// SHA-256 over every file, each named and length-prefixed.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [&self.gateway, &self.keys, &self.master_key] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        for (name, part) in &self.shards {
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    /// The shard file `name`, checked against the digest the index gives it.
    fn shard(&self, dir: &Path, name: &str, sha256: &str) -> Result<&[u8], LoadError> {
        let Some(bytes) = self.shards.get(name) else {
            return Err(LoadError::Inconsistent(format!(
                "the index names shard {name}, which is not in {} (is the volume still being updated?)",
                dir.display()
            )));
        };
        if shards::sha256_hex(bytes) != sha256 {
            return Err(LoadError::Inconsistent(format!(
                "shard {name} is not the one the index names (is the volume still being updated?)"
            )));
        }
        Ok(bytes)
    }
}

impl Snapshot {
    /// Parses and checks the files of a config directory found at `dir` (used in messages).
    pub fn from_files(dir: &Path, files: &ConfigFiles) -> Result<Self, LoadError> {
        let gateway_path = dir.join(GATEWAY_CONFIG_FILE);
        let config: GatewayConfig =
            serde_yaml::from_slice(&files.gateway).map_err(|e| LoadError::Parse {
                path: gateway_path.clone(),
                message: redact::serde_message(&e.to_string()),
            })?;
        if config.version != CONFIG_VERSION {
            return Err(LoadError::Version {
                path: gateway_path,
                found: config.version,
            });
        }
        let key_store = KeyStore::from_yaml(&files.keys).map_err(|source| LoadError::Keys {
            path: dir.join(KEY_STORE_FILE),
            source,
        })?;
        // Equal model lists shared, the index's or the whole config's and each shard's as it
        // is parsed (so a shard's copies are freed before the next shard's are made).
        let mut models = HashSet::new();
        let mut config = config;
        super::share_models(&mut config.providers, &mut models);
        let (config, key_store) = match config.shards.clone() {
            None => (config, key_store),
            Some(index) => Self::join_shards(dir, files, &index, config, key_store, &mut models)?,
        };
        let key_ring = KeyRing::from_yaml(&files.master_key).map_err(|source| LoadError::Keys {
            path: dir.join(MASTER_KEY_FILE),
            source,
        })?;
        let mut snapshot = Self {
            config,
            key_store,
            key_ring,
            fingerprint: files.fingerprint(),
            tenants_by_key: hashbrown::HashMap::new(),
            providers_by_id: hashbrown::HashMap::new(),
        };
        snapshot.config.link();
        snapshot.index()?;
        Ok(snapshot)
    }

    /// The shards the index names, each checked against its digest and parsed, joined with
    /// the index's own config and key store.
    fn join_shards(
        dir: &Path,
        files: &ConfigFiles,
        index: &shards::ShardIndex,
        config: GatewayConfig,
        key_store: KeyStore,
        models: &mut HashSet<std::sync::Arc<[super::ModelConfig]>>,
    ) -> Result<(GatewayConfig, KeyStore), LoadError> {
        let count = index.count as usize;
        if index.count == 0
            || index.count > shards::MAX_SHARDS
            || index.config.len() != count
            || index.keys.len() != count
        {
            return Err(LoadError::Inconsistent(format!(
                "the index names {} config and {} key shards for a count of {}",
                index.config.len(),
                index.keys.len(),
                index.count
            )));
        }
        let mut config_files = Vec::with_capacity(count);
        for (number, sha256) in index.config.iter().enumerate() {
            let name = shards::config_file(number);
            config_files.push((name.clone(), files.shard(dir, &name, sha256)?));
        }
        let mut keys = Vec::with_capacity(count);
        for (number, sha256) in index.keys.iter().enumerate() {
            let name = shards::keys_file(number);
            let bytes = files.shard(dir, &name, sha256)?;
            keys.push(
                KeyStore::from_yaml(bytes).map_err(|source| LoadError::Keys {
                    path: dir.join(&name),
                    source,
                })?,
            );
        }
        // One shard after another, every shard's tenants into one list (see decode_config).
        // Reserved from the first shard's count with room to spare: room never written is
        // never resident, and a shard's share of an id hash varies by a few percent.
        let mut tenants = Vec::new();
        let mut shards = Vec::with_capacity(count);
        for (name, bytes) in &config_files {
            let mut shard = shards::decode_config(name, bytes, &mut tenants).map_err(|error| {
                LoadError::Parse {
                    path: dir.to_owned(),
                    message: error.to_string(),
                }
            })?;
            super::share_models(&mut shard.providers, models);
            shards.push(shard);
            if shards.len() == 1 {
                // An estimate only: a first shard far larger than its share (a hand-edited
                // directory) must not abort the process on a room it cannot have, so the
                // list then grows as it needs.
                let estimate = tenants.len().saturating_mul(count + count / 4 + 1);
                let _ = tenants.try_reserve(estimate);
            }
        }
        Ok(shards::join(config, tenants, shards, keys, key_store))
    }

    /// Reads and loads a config directory.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        Self::from_files(dir, &ConfigFiles::read(dir)?)
    }

    fn index(&mut self) -> Result<(), LoadError> {
        let inconsistent = |message: String| Err(LoadError::Inconsistent(message));
        // Routing binary-searches providers (GatewayConfig::provider) and a rule's namespaces;
        // the render writes both sorted, a hand-edited file may not be.
        self.config
            .providers
            .sort_unstable_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for rule in &mut self.config.routing {
            if let Some(namespaces) = &mut rule.namespaces {
                namespaces.sort();
            }
        }
        for (index, provider) in self.config.providers.iter().enumerate() {
            if self
                .providers_by_id
                .insert(provider.id.clone(), index)
                .is_some()
            {
                return inconsistent(format!("provider {} appears twice", provider.id));
            }
            if let Some(row_id) = &provider.credential {
                let Some(row) = self.key_store.get(row_id) else {
                    return inconsistent(format!(
                        "provider {} needs key store row {row_id}, which is missing",
                        provider.id
                    ));
                };
                let key_id = row.encrypted_value.split(':').nth(1).unwrap_or_default();
                if self.key_ring.get(key_id).is_none() {
                    return inconsistent(format!(
                        "key store row {row_id} is sealed with master key {key_id:?}, which is not in the key ring"
                    ));
                }
            }
        }
        for (index, tenant) in self.config.tenants.iter().enumerate() {
            // The shared counters group a tenant's keys by the namespace its id starts with (one
            // hash slot on a Redis Cluster, beside the namespace's own counters): an id naming
            // another namespace would put them apart.
            if tenant.id.split_once('/').map(|(namespace, _)| namespace)
                != Some(tenant.namespace.as_str())
            {
                return inconsistent(format!(
                    "tenant {} is not named <namespace>/<name> in its namespace {}",
                    tenant.id, tenant.namespace
                ));
            }
            for provider in tenant.providers.iter().chain(&tenant.preferred_provider) {
                if !self.providers_by_id.contains_key(provider) {
                    return inconsistent(format!(
                        "tenant {} refers to unknown provider {provider}",
                        tenant.id
                    ));
                }
            }
            for key in &tenant.access_keys {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&key.sha256, &mut hash).map_err(|_| {
                    LoadError::Inconsistent(format!(
                        "tenant {} access key {} has a malformed hash",
                        tenant.id, key.name
                    ))
                })?;
                if self.tenants_by_key.insert(hash, index).is_some() {
                    return inconsistent(format!(
                        "access key {} of tenant {} is also another tenant's",
                        key.name, tenant.id
                    ));
                }
            }
        }
        for rule in &self.config.routing {
            for target in rule.targets.iter().chain(&rule.fallback) {
                if !self.providers_by_id.contains_key(&target.provider) {
                    return inconsistent(format!(
                        "routing rule {} refers to unknown provider {}",
                        rule.id, target.provider
                    ));
                }
            }
        }
        Ok(())
    }

    /// The tenant an access key belongs to. The key is hashed first, so the lookup is on a
    /// digest and takes the same time whether or not a tenant matches.
    pub fn tenant_for_key(&self, access_key: &[u8]) -> Option<&TenantConfig> {
        let digest: [u8; 32] = Sha256::digest(access_key).into();
        self.tenants_by_key
            .get(&digest)
            .map(|&index| &self.config.tenants[index])
    }

    /// A provider by id.
    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.providers_by_id
            .get(id)
            .map(|&index| &self.config.providers[index])
    }
}
