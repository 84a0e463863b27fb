//! Loading a rendered config directory (as `dgidgi render --config-dir` writes it, or as
//! Kubernetes mounts the ConfigMap and Secrets, files behind `..data` links): parse, check that
//! it hangs together, and index it for the request path. A directory that fails any check is
//! refused as a whole, so a gateway keeps serving its last good config.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{
    CONFIG_VERSION, GATEWAY_CONFIG_FILE, GatewayConfig, KEY_STORE_FILE, MASTER_KEY_FILE,
    ProviderConfig, TenantConfig,
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
    tenants_by_key: HashMap<[u8; 32], usize>,
    providers_by_id: HashMap<String, usize>,
}

/// The raw bytes of a config directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFiles {
    /// `gateway.yaml`.
    pub gateway: Vec<u8>,
    /// `keys.yaml`.
    pub keys: Vec<u8>,
    /// `master-key.yaml`.
    pub master_key: Vec<u8>,
}

impl ConfigFiles {
    /// Reads the three files of `dir` (following links, as Kubernetes volume mounts need).
    pub fn read(dir: &Path) -> Result<Self, LoadError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| LoadError::Read { path, source })
        };
        Ok(Self {
            gateway: read(GATEWAY_CONFIG_FILE)?,
            keys: read(KEY_STORE_FILE)?,
            master_key: read(MASTER_KEY_FILE)?,
        })
    }

    /// SHA-256 over the three files, each length-prefixed.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [&self.gateway, &self.keys, &self.master_key] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
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
        let key_ring = KeyRing::from_yaml(&files.master_key).map_err(|source| LoadError::Keys {
            path: dir.join(MASTER_KEY_FILE),
            source,
        })?;
        let mut snapshot = Self {
            config,
            key_store,
            key_ring,
            fingerprint: files.fingerprint(),
            tenants_by_key: HashMap::new(),
            providers_by_id: HashMap::new(),
        };
        snapshot.config.link();
        snapshot.index()?;
        Ok(snapshot)
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
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
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
