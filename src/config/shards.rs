//! The config and the key store split into shards, so they fit Kubernetes at any number of
//! tenants: a ConfigMap or Secret holds 1 MiB at most, and client-side `kubectl apply` (Argo
//! CD's default) keeps a second copy of each object in its last-applied annotation, so every
//! shard is kept well under 256 KiB.
//!
//! What belongs to a tenant namespace (its tenants, providers, routing rules and stored keys)
//! goes to the shard its id hashes to (SHA-256, so every process and version agrees); what
//! belongs to the platform stays in the index (`gateway.yaml`, `keys.yaml`), which also names
//! every shard's SHA-256. A change to one tenant rewrites its shard and the index; the loader
//! takes a directory only when every shard matches its digest, so a volume swap the kubelet has
//! not finished (one ConfigMap newer than another) is refused and the last good config serves.
//!
//! Config shards are JSON (a subset of YAML), gzip-compressed (`binaryData`): tenants repeat the
//! same field names, so they compress about tenfold, and JSON parses an order of magnitude
//! faster than YAML. Key store shards are YAML like `keys.yaml`: their rows are ciphertext,
//! which does not compress.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};

use serde::de::DeserializeSeed as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CompiledRule, GatewayConfig, ProviderConfig, Scope, TenantConfig};
use crate::crypto::KeyStore;

/// The largest shard count (a projected volume lists every shard as a source).
pub const MAX_SHARDS: u32 = 1024;

/// The size every shard is kept under: client-side apply's last-applied annotation holds a
/// second copy of the object, and the API server refuses an object over 1 MiB with both.
pub const SHARD_LIMIT_BYTES: usize = 256 * 1024;

/// The most a config shard may inflate to when decompressed (a corrupt or hostile file must not
/// take the gateway's memory).
const MAX_INFLATED_BYTES: u64 = 256 * 1024 * 1024;

/// What the index (`gateway.yaml`) says of the shards: how many there are, and each one's
/// SHA-256, in bucket order.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShardIndex {
    /// The number of buckets ids hash into.
    pub count: u32,
    /// SHA-256 (hex) of each config shard file, as stored (compressed).
    pub config: Vec<String>,
    /// SHA-256 (hex) of each key store shard file.
    pub keys: Vec<String>,
}

/// One config shard: what of a bucket's tenant namespaces the gateway loads.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigShard {
    /// Tenants whose id hashes here.
    pub tenants: Vec<TenantConfig>,
    /// Tenant-namespace providers whose id hashes here.
    pub providers: Vec<ProviderConfig>,
    /// Tenant-namespace routing rules whose id hashes here.
    pub routing: Vec<CompiledRule>,
    /// Of each platform rule that applies to selected namespaces (a `tenantSelector`), the
    /// selected namespaces that hash here: a selector matching half of 100,000 namespaces
    /// would otherwise put 50,000 names in the index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rule_namespaces: BTreeMap<String, Vec<String>>,
}

/// A config split: the index and the shards, in bucket order.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The platform's part, with an empty tenant list (the digests are filled by [`encode`]).
    pub index: GatewayConfig,
    /// The platform's stored keys.
    pub index_keys: KeyStore,
    /// Each bucket's config.
    pub config: Vec<ConfigShard>,
    /// Each bucket's stored keys.
    pub keys: Vec<KeyStore>,
}

/// The config and key store files of a sharded layout, as written and mounted.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// `gateway.yaml`: the index, naming every shard's digest.
    pub index: String,
    /// `keys.yaml`: the platform's rows.
    pub index_keys: String,
    /// `config-NNN.json.gz`, in bucket order.
    pub config: Vec<Vec<u8>>,
    /// `keys-NNN.yaml`, in bucket order.
    pub keys: Vec<String>,
}

/// Why shards could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The shard count is out of range.
    #[error("a shard count must be 1 to {MAX_SHARDS}, not {0}")]
    Count(u32),
    /// A shard could not be serialized.
    #[error("writing {what}: {message}")]
    Write {
        /// Which document.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// A shard could not be read.
    #[error("{file}: {message}")]
    Read {
        /// The shard file.
        file: String,
        /// What is wrong (values redacted).
        message: String,
    },
}

/// The bucket `id` belongs to among `count`: the first 8 bytes of its SHA-256, modulo `count`.
pub fn bucket(id: &str, count: u32) -> usize {
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as usize
}

/// The ConfigMap holding config shard `index` (beside the index's `dgidgi-gateway-config`).
pub fn config_map_name(index: usize) -> String {
    format!("{}-{index:03}", super::CONFIG_MAP_NAME)
}

/// The Secret holding key store shard `index` (beside the index's `dgidgi-gateway-keys`).
pub fn keys_secret_name(index: usize) -> String {
    format!("{}-{index:03}", super::KEY_STORE_SECRET_NAME)
}

/// Whether `name` is one of the key store's Secrets: the index's (`dgidgi-gateway-keys`) or a
/// shard's.
pub fn is_key_store_secret(name: &str) -> bool {
    name == super::KEY_STORE_SECRET_NAME || is_keys_secret(name)
}

/// Whether `name` is a key store shard's Secret.
pub fn is_keys_secret(name: &str) -> bool {
    shard_number(name, &format!("{}-", super::KEY_STORE_SECRET_NAME), "").is_some()
}

/// Whether `name` is a config shard's ConfigMap.
pub fn is_config_map(name: &str) -> bool {
    shard_number(name, &format!("{}-", super::CONFIG_MAP_NAME), "").is_some()
}

/// Whether `name` is a shard file (`config-NNN.json.gz` or `keys-NNN.yaml`).
pub fn is_shard_file(name: &str) -> bool {
    shard_number(name, "config-", ".json.gz").is_some() || is_keys_file(name)
}

/// Whether `name` is a key store shard file (`keys-NNN.yaml`).
pub fn is_keys_file(name: &str) -> bool {
    shard_number(name, "keys-", ".yaml").is_some()
}

/// The three-digit number between `prefix` and `suffix` in `name`.
fn shard_number(name: &str, prefix: &str, suffix: &str) -> Option<usize> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The file (and ConfigMap `binaryData` key) of config shard `index`.
pub fn config_file(index: usize) -> String {
    format!("config-{index:03}.json.gz")
}

/// The file (and Secret key) of key store shard `index`.
pub fn keys_file(index: usize) -> String {
    format!("keys-{index:03}.yaml")
}

/// Splits `config` and `key_store` into `count` buckets: the platform namespace's providers,
/// rules and keys stay in the index, everything else goes to the bucket of its id.
pub fn split(
    config: &GatewayConfig,
    key_store: &KeyStore,
    count: u32,
) -> Result<Split, ShardError> {
    split_buckets(config, key_store, count, None)
}

/// [`split`], filling only the buckets in `only` (all when `None`); the others are left empty,
/// for [`encode`] to take from the previous files. Every id is still hashed to find its
/// bucket, but only what a wanted bucket holds is copied.
pub fn split_buckets(
    config: &GatewayConfig,
    key_store: &KeyStore,
    count: u32,
    only: Option<&BTreeSet<usize>>,
) -> Result<Split, ShardError> {
    if count == 0 || count > MAX_SHARDS {
        return Err(ShardError::Count(count));
    }
    let buckets = count as usize;
    let wanted = |id: &str| {
        let index = bucket(id, count);
        only.is_none_or(|only| only.contains(&index))
            .then_some(index)
    };
    let mut shards = vec![ConfigShard::default(); buckets];
    let mut keys = vec![KeyStore::default(); buckets];
    let mut index = GatewayConfig {
        version: config.version,
        platform_namespace: config.platform_namespace.clone(),
        providers: Vec::new(),
        tenants: Vec::new(),
        routing: Vec::new(),
        unbounded_output_tokens: config.unbounded_output_tokens,
        shards: None,
    };
    for tenant in &config.tenants {
        if let Some(at) = wanted(&tenant.id) {
            shards[at].tenants.push(tenant.clone());
        }
    }
    for provider in &config.providers {
        if provider.scope == Scope::Platform {
            index.providers.push(provider.clone());
        } else if let Some(at) = wanted(&provider.id) {
            shards[at].providers.push(provider.clone());
        }
    }
    for rule in &config.routing {
        if rule.scope == Scope::Platform {
            let mut rule = rule.clone();
            if let Some(namespaces) = &mut rule.namespaces {
                for namespace in namespaces.drain(..) {
                    if let Some(at) = wanted(&namespace) {
                        shards[at]
                            .rule_namespaces
                            .entry(rule.id.clone())
                            .or_default()
                            .push(namespace);
                    }
                }
            }
            index.routing.push(rule);
        } else if let Some(at) = wanted(&rule.id) {
            shards[at].routing.push(rule.clone());
        }
    }
    let mut index_keys = KeyStore::default();
    for row in &key_store.rows {
        if row.tenant_id == config.platform_namespace {
            index_keys.rows.push(row.clone());
        } else if let Some(at) = wanted(&row.id) {
            keys[at].rows.push(row.clone());
        }
    }
    Ok(Split {
        index,
        index_keys,
        config: shards,
        keys,
    })
}

/// Writes a split's files: each shard serialized (config shards as gzip-compressed JSON), then
/// the index naming their digests. With `reuse` (the previous files, and the buckets that
/// changed since; the split filled only those, see [`split_buckets`]), the other shards keep
/// their previous files: one tenant's change serializes one shard of 64.
pub fn encode(
    split: &Split,
    reuse: Option<(&Encoded, &BTreeSet<usize>)>,
) -> Result<Encoded, ShardError> {
    if let Some((previous, _)) = reuse
        && (previous.config.len() != split.config.len() || previous.keys.len() != split.keys.len())
    {
        return Err(ShardError::Write {
            what: "the shards".to_owned(),
            message: "the previous files are of another shard count".to_owned(),
        });
    }
    // The previous file of shard `index`, if it did not change.
    let kept = |index: usize| reuse.filter(|(_, changed)| !changed.contains(&index));
    let config = split
        .config
        .iter()
        .enumerate()
        .map(|(index, shard)| match kept(index) {
            Some((previous, _)) => Ok(previous.config[index].clone()),
            None => compress(shard, &config_file(index)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys = split
        .keys
        .iter()
        .enumerate()
        .map(|(index, store)| match kept(index) {
            Some((previous, _)) => Ok(previous.keys[index].clone()),
            None => store.to_yaml().map_err(|error| ShardError::Write {
                what: keys_file(index),
                message: error.to_string(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut index = split.index.clone();
    index.shards = Some(ShardIndex {
        count: split.config.len() as u32,
        config: config.iter().map(|bytes| sha256_hex(bytes)).collect(),
        keys: keys
            .iter()
            .map(|text| sha256_hex(text.as_bytes()))
            .collect(),
    });
    let write = |what: &str, message: String| ShardError::Write {
        what: what.to_owned(),
        message,
    };
    Ok(Encoded {
        index: serde_yaml::to_string(&index)
            .map_err(|error| write(super::GATEWAY_CONFIG_FILE, error.to_string()))?,
        index_keys: split
            .index_keys
            .to_yaml()
            .map_err(|error| write(super::KEY_STORE_FILE, error.to_string()))?,
        config,
        keys,
    })
}

fn compress(shard: &ConfigShard, file: &str) -> Result<Vec<u8>, ShardError> {
    let failed = |message: String| ShardError::Write {
        what: file.to_owned(),
        message,
    };
    let json = serde_json::to_vec(shard).map_err(|error| failed(error.to_string()))?;
    gzip(&json).map_err(|error| failed(error.to_string()))
}

/// `bytes` gzip-compressed. The header carries no time or name, so the same shard is always
/// the same bytes (GitOps diffs and the operator's comparisons see only real changes). The
/// fastest level: the default one took a tenth of a 100,000-tenant `dgidgi render` for shards
/// a fifth smaller.
fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Reads a config shard file (gzip-compressed JSON), bounded in what it may inflate to. Its
/// tenants are appended to `tenants` as they are parsed, not returned in the shard: the
/// loader gathers every shard's tenants into one list reserved once, with no list per shard
/// grown by doubling beside it (those lists, and the copy into the joined one, were a third
/// of the gateway's peak memory while loading 100,000 tenants).
pub fn decode_config(
    file: &str,
    bytes: &[u8],
    tenants: &mut Vec<TenantConfig>,
) -> Result<ConfigShard, ShardError> {
    let failed = |message: String| ShardError::Read {
        file: file.to_owned(),
        message,
    };
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|error| failed(format!("not gzip: {error}")))?;
    if json.len() as u64 > MAX_INFLATED_BYTES {
        return Err(failed(format!("inflates past {MAX_INFLATED_BYTES} bytes")));
    }
    let mut parser = serde_json::Deserializer::from_slice(&json);
    ShardInto { tenants }
        .deserialize(&mut parser)
        .and_then(|shard| parser.end().map(|()| shard))
        .map_err(|error| failed(crate::redact::serde_message(&error.to_string())))
}

/// A [`ConfigShard`]'s parse with its tenants sent to a list of the caller's.
struct ShardInto<'a> {
    tenants: &'a mut Vec<TenantConfig>,
}

/// A shard's members, as [`ConfigShard`] names them (others are ignored, as there).
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum ShardField {
    Tenants,
    Providers,
    Routing,
    RuleNamespaces,
    #[serde(other)]
    Other,
}

impl<'de> serde::de::DeserializeSeed<'de> for ShardInto<'_> {
    type Value = ConfigShard;

    fn deserialize<D: serde::Deserializer<'de>>(self, parser: D) -> Result<ConfigShard, D::Error> {
        parser.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ShardInto<'_> {
    type Value = ConfigShard;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a config shard")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ConfigShard, A::Error> {
        let mut shard = ConfigShard::default();
        let (mut tenants, mut providers, mut routing) = (false, None, None);
        let mut rule_namespaces = None;
        // A member twice is refused, as the derived parse of `ConfigShard` refuses it.
        let twice = |name| Err(serde::de::Error::duplicate_field(name));
        while let Some(field) = map.next_key()? {
            match field {
                ShardField::Tenants if tenants => return twice("tenants"),
                ShardField::Providers if providers.is_some() => return twice("providers"),
                ShardField::Routing if routing.is_some() => return twice("routing"),
                ShardField::RuleNamespaces if rule_namespaces.is_some() => {
                    return twice("ruleNamespaces");
                }
                ShardField::Tenants => {
                    map.next_value_seed(AppendTo(&mut *self.tenants))?;
                    tenants = true;
                }
                ShardField::Providers => providers = Some(map.next_value()?),
                ShardField::Routing => routing = Some(map.next_value()?),
                ShardField::RuleNamespaces => rule_namespaces = Some(map.next_value()?),
                ShardField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if !tenants {
            return Err(serde::de::Error::missing_field("tenants"));
        }
        shard.rule_namespaces = rule_namespaces.unwrap_or_default();
        shard.providers = providers.ok_or_else(|| serde::de::Error::missing_field("providers"))?;
        shard.routing = routing.ok_or_else(|| serde::de::Error::missing_field("routing"))?;
        Ok(shard)
    }
}

/// A JSON array's elements pushed onto a list.
struct AppendTo<'a, T>(&'a mut Vec<T>);

impl<'de, T: Deserialize<'de>> serde::de::DeserializeSeed<'de> for AppendTo<'_, T> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, parser: D) -> Result<(), D::Error> {
        parser.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for AppendTo<'_, T> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a list")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(element) = seq.next_element()? {
            self.0.push(element);
        }
        Ok(())
    }
}

/// Puts a split back together, in the order the render writes: tenants by id, providers by
/// namespace and name, rules in match order, key rows by id.
pub fn join(
    mut index: GatewayConfig,
    tenants: Vec<TenantConfig>,
    shards: Vec<ConfigShard>,
    key_shards: Vec<KeyStore>,
    index_keys: KeyStore,
) -> (GatewayConfig, KeyStore) {
    index.shards = None;
    let mut keys = index_keys;
    // The shards' tenants, gathered as they were parsed (decode_config), and the index's.
    let mut tenants = tenants;
    tenants.append(&mut index.tenants);
    index.tenants = tenants;
    // Room for the rest at once: growing by doubling would hold up to twice each list while
    // the shards are moved in.
    index
        .providers
        .reserve_exact(shards.iter().map(|s| s.providers.len()).sum());
    index
        .routing
        .reserve_exact(shards.iter().map(|s| s.routing.len()).sum());
    keys.rows
        .reserve_exact(key_shards.iter().map(|s| s.rows.len()).sum());
    let mut selected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for shard in shards {
        index.tenants.extend(shard.tenants);
        index.providers.extend(shard.providers);
        index.routing.extend(shard.routing);
        for (rule, namespaces) in shard.rule_namespaces {
            selected.entry(rule).or_default().extend(namespaces);
        }
    }
    for rule in &mut index.routing {
        if let (Some(namespaces), Some(more)) = (&mut rule.namespaces, selected.remove(&rule.id)) {
            namespaces.extend(more);
            namespaces.sort();
        }
    }
    for store in key_shards {
        keys.rows.extend(store.rows);
    }
    // In place (ids are unique, so stability buys nothing): a stable sort's scratch of half the
    // fleet was a fifth of the gateway's peak while loading 100,000 tenants.
    index.tenants.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    index
        .providers
        .sort_unstable_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    index.routing.sort_unstable_by(CompiledRule::match_order);
    keys.rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    (index, keys)
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_ones_the_chart_mounts() {
        assert_eq!(config_map_name(3), "dgidgi-gateway-config-003");
        assert_eq!(keys_secret_name(12), "dgidgi-gateway-keys-012");
        assert_eq!(config_file(7), "config-007.json.gz");
        assert_eq!(keys_file(7), "keys-007.yaml");
        assert!(is_keys_secret("dgidgi-gateway-keys-012"));
        assert!(!is_keys_secret("dgidgi-gateway-keys"));
        assert!(is_config_map("dgidgi-gateway-config-000"));
        assert!(is_shard_file("config-123.json.gz") && is_shard_file("keys-001.yaml"));
        assert!(!is_shard_file("config-12.json.gz") && !is_shard_file("keys-abc.yaml"));
    }

    #[test]
    fn a_bucket_is_a_fixed_function_of_the_id() {
        // Part of the layout's contract: every process and version puts an id in one place.
        assert_eq!(bucket("team-acme/acme", 1), 0);
        let first = bucket("team-acme/acme", 64);
        assert_eq!(first, bucket("team-acme/acme", 64));
        assert!(first < 64);
    }

    #[test]
    fn a_shard_that_inflates_past_the_bound_or_is_not_gzip_is_refused() {
        let mut tenants = Vec::new();
        assert!(decode_config("config-000.json.gz", b"not gzip", &mut tenants).is_err());
        let shard = ConfigShard::default();
        let bytes = compress(&shard, "config-000.json.gz").unwrap();
        assert_eq!(
            decode_config("config-000.json.gz", &bytes, &mut tenants).unwrap(),
            shard
        );
        // A shard's tenants go to the caller's list, after those already there; a shard
        // without its tenants is refused as a shard without providers would be.
        let tenant = |id: &str| TenantConfig {
            id: id.into(),
            ..TenantConfig::default()
        };
        let with_tenants = ConfigShard {
            tenants: vec![tenant("a/t"), tenant("b/t")],
            ..ConfigShard::default()
        };
        let bytes_with = compress(&with_tenants, "config-001.json.gz").unwrap();
        let rest = decode_config("config-001.json.gz", &bytes_with, &mut tenants).unwrap();
        assert!(rest.tenants.is_empty());
        let ids: Vec<&str> = tenants.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a/t", "b/t"]);
        let without = gzip(br#"{"providers":[],"routing":[]}"#).unwrap();
        let refused = decode_config("config-002.json.gz", &without, &mut tenants).unwrap_err();
        assert!(
            refused.to_string().contains("missing field `tenants`"),
            "{refused}"
        );
        // The same shard is the same bytes (no time in the gzip header).
        assert_eq!(bytes, compress(&shard, "config-000.json.gz").unwrap());
    }
}
