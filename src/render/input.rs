//! Reading render's inputs from YAML text: Namespaces, Secrets, the three custom resources and
//! the outputs of an earlier render. File I/O stays in the CLI; this takes text.
//!
//! Custom resources are checked the way the API server would: typed deserialization (schema),
//! the schema's value checks (patterns, lengths, item counts; [`super::structural`]) and the
//! CRDs' own CEL rules, evaluated locally, so offline render refuses what a cluster would.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kube::CustomResourceExt;
use kube::core::cel::{CompiledSchema, ErrorKind, Validator, compile_schema};
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};
use zeroize::Zeroizing;

use super::report::{REPORT_KIND, RenderReport};
use super::structural::StructuralChecks;
use super::{InvalidResource, NamespaceMeta, ObjectKey, RenderInput, ResourceKind, SecretValues};
use crate::config::{
    CONFIG_MAP_NAME, KEY_STORE_FILE, KEY_STORE_SECRET_NAME, MASTER_KEY_FILE, MASTER_KEY_SECRET_NAME,
};
use crate::crd::{API_VERSION, LlmProvider, LlmTenant, RoutingPolicy};
use crate::crypto::{CryptoError, KeyRing, KeyStore};
use crate::redact;

/// Input problems that stop render: a file that is not YAML, or earlier key material that is
/// corrupt (regenerating it would orphan every row, so render refuses instead).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Unparseable YAML.
    #[error("{source_name}{location}: invalid YAML: {message}")]
    Yaml {
        /// File name (or other label) of the text.
        source_name: String,
        /// `:line:column`, when known.
        location: String,
        /// The parser's message.
        message: String,
    },
    /// The master key ring Secret is corrupt.
    #[error(
        "{source_name}: Secret {MASTER_KEY_SECRET_NAME}: {error}; fix or restore it (a new ring could not decrypt existing rows)"
    )]
    KeyRing {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        error: CryptoError,
    },
    /// The CRDs' own schemas could not be compiled (a build defect, not an input problem).
    #[error("internal: the {0} CRD schema could not be compiled for local validation")]
    Schema(&'static str),
    /// The key store Secret is corrupt.
    #[error(
        "{source_name}: Secret {KEY_STORE_SECRET_NAME}: {error}; fix it, or delete it to re-encrypt every key from its source Secret"
    )]
    KeyStore {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        error: CryptoError,
    },
}

/// What the API server checks beyond types on one kind: its CEL rules and its schema's value
/// checks (patterns, lengths, item counts), each compiled once.
struct KindRules {
    cel: CompiledSchema,
    structural: Option<StructuralChecks>,
}

/// The three CRDs' rules, compiled once.
/// How many documents are parsed before their custom resources are checked together.
const CHECK_BATCH: usize = 4096;

/// Below this many documents a batch is checked one by one (threads cost more than they save).
const MIN_PARALLEL_CHECKS: usize = 256;

/// A custom resource checked ahead of being added: its typed form, or why it is invalid
/// (boxed: the typed forms differ in size by hundreds of bytes).
enum Checked {
    Provider(Box<Result<LlmProvider, String>>),
    Tenant(Box<Result<LlmTenant, String>>),
    Policy(Box<Result<RoutingPolicy, String>>),
}

struct SchemaRules {
    validator: Validator,
    provider: KindRules,
    tenant: KindRules,
    policy: KindRules,
}

fn compiled_rules<K: CustomResourceExt>(kind: &'static str) -> Result<KindRules, InputError> {
    let schema = K::crd()
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .ok_or(InputError::Schema(kind))?;
    let cel = compile_schema(&schema);
    if !cel.compilation_errors().is_empty() {
        return Err(InputError::Schema(kind));
    }
    let structural = StructuralChecks::compile(&schema).map_err(|_| InputError::Schema(kind))?;
    Ok(KindRules { cel, structural })
}

/// Puts `value` in `slot`; true if the slot held a different one. Two copies of the same keys
/// (`dgidgi up` and `render --out --config-dir` read them back from the config directory and
/// from the rendered Secrets) are one, not a conflict to warn about.
/// A key store document (or shard) read from `source_name`.
fn key_store(source_name: &str, bytes: &[u8]) -> Result<KeyStore, InputError> {
    KeyStore::from_yaml(bytes).map_err(|error| InputError::KeyStore {
        source_name: source_name.to_owned(),
        error,
    })
}

fn replaced_by_another<T: PartialEq>(slot: &mut Option<T>, value: T) -> bool {
    slot.replace(value)
        .is_some_and(|earlier| Some(&earlier) != slot.as_ref())
}

impl SchemaRules {
    fn new() -> Result<Self, InputError> {
        Ok(Self {
            validator: Validator::new(),
            provider: compiled_rules::<LlmProvider>("LlmProvider")?,
            tenant: compiled_rules::<LlmTenant>("LlmTenant")?,
            policy: compiled_rules::<RoutingPolicy>("RoutingPolicy")?,
        })
    }

    /// A custom resource's typed form as the API server would accept it: typed parse, no
    /// unknown fields, the schema's checks and its CEL rules; else why not.
    fn resource<K>(&self, kind: ResourceKind, value: &Value) -> Result<K, String>
    where
        K: DeserializeOwned + serde::Serialize,
    {
        let resource = serde_path_to_error::deserialize::<_, K>(value.clone()).map_err(|e| {
            let path = e.path().to_string();
            let message = redact::serde_message(&e.into_inner().to_string());
            if path == "." {
                message
            } else {
                format!("{path}: {message}")
            }
        })?;
        let json =
            serde_json::to_value(&resource).map_err(|e| redact::serde_message(&e.to_string()))?;
        let given =
            serde_json::to_value(value).map_err(|e| redact::serde_message(&e.to_string()))?;
        let mut unknown = Vec::new();
        unknown_fields(given.get("spec"), json.get("spec"), "spec", &mut unknown);
        if !unknown.is_empty() {
            return Err(format!("unknown field(s) {}", unknown.join(", ")));
        }
        self.check(kind, &json)?;
        Ok(resource)
    }

    /// The custom resources of a batch of documents checked on every core (`None` for every
    /// other document, and for all of a batch too small to be worth the threads).
    fn check_all(&self, batch: &[(usize, Value)]) -> Vec<Option<Checked>> {
        let check_one = |value: &Value| -> Option<Checked> {
            if value.get("apiVersion").and_then(Value::as_str) != Some(API_VERSION) {
                return None;
            }
            Some(match value.get("kind").and_then(Value::as_str)? {
                "LlmProvider" => {
                    Checked::Provider(Box::new(self.resource(ResourceKind::LlmProvider, value)))
                }
                "LlmTenant" => {
                    Checked::Tenant(Box::new(self.resource(ResourceKind::LlmTenant, value)))
                }
                "RoutingPolicy" => {
                    Checked::Policy(Box::new(self.resource(ResourceKind::RoutingPolicy, value)))
                }
                _ => return None,
            })
        };
        if batch.len() < MIN_PARALLEL_CHECKS {
            // Checked one by one as they are added.
            return batch.iter().map(|_| None).collect();
        }
        crate::parallel::map(batch, "render-check", |(_, value)| check_one(value))
    }

    fn check(&self, kind: ResourceKind, object: &serde_json::Value) -> Result<(), String> {
        let rules = match kind {
            ResourceKind::LlmProvider => &self.provider,
            ResourceKind::LlmTenant => &self.tenant,
            ResourceKind::RoutingPolicy => &self.policy,
        };
        // Like the API server: the schema's own checks first; the CEL rules after them unless
        // something was too long or too many (their evaluation cost could then be unbounded).
        let mut messages = Vec::new();
        let mut blocking = false;
        if let Some(structural) = &rules.structural {
            for violation in structural.check(object) {
                blocking |= violation.blocking;
                messages.push(violation.message);
            }
        }
        if !blocking && let Err(cel) = self.cel_check(&rules.cel, object) {
            messages.push(cel);
        }
        if messages.is_empty() {
            Ok(())
        } else {
            Err(messages.join("; "))
        }
    }

    fn cel_check(&self, schema: &CompiledSchema, object: &serde_json::Value) -> Result<(), String> {
        self.validator
            .validate_compiled(schema, object, None)
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|error| {
                        // A failed rule's message is ours; other errors may quote input values.
                        let message = if error.kind == ErrorKind::ValidationFailure {
                            error.message.clone()
                        } else {
                            format!("rule could not be evaluated ({:?})", error.kind)
                        };
                        if error.field_path.is_empty() {
                            message
                        } else {
                            format!("{}: {message}", error.field_path)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
    }
}

/// Accumulates inputs from any number of YAML texts, then hands over a [`RenderInput`].
pub struct InputLoader {
    platform_namespace: String,
    input: RenderInput,
    rules: SchemaRules,
    warnings: Vec<String>,
    /// The rows of key store shards, joined to the index's store when loading finishes.
    key_shard_rows: Vec<crate::crypto::KeyStoreRow>,
}

impl InputLoader {
    /// A loader for the given platform namespace.
    pub fn new(platform_namespace: impl Into<String>) -> Result<Self, InputError> {
        Ok(Self {
            platform_namespace: platform_namespace.into(),
            input: RenderInput::default(),
            rules: SchemaRules::new()?,
            warnings: Vec::new(),
            key_shard_rows: Vec::new(),
        })
    }

    /// Adds every document of a (multi-document) YAML text. `source_name` labels errors.
    pub fn add_yaml(&mut self, source_name: &str, text: &str) -> Result<(), InputError> {
        use serde::Deserialize as _;
        // Parsed in batches whose custom resources are checked (typed parse, schema, CEL) on
        // every core before they are added in order: the checks are most of reading a large
        // fleet, and a batch bounds what is held at once.
        let mut documents = serde_yaml::Deserializer::from_str(text)
            .enumerate()
            .peekable();
        while documents.peek().is_some() {
            let batch = documents
                .by_ref()
                .take(CHECK_BATCH)
                .map(|(index, document)| {
                    Value::deserialize(document)
                        .map(|value| (index, value))
                        .map_err(|e| yaml_error(source_name, &e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.add_batch(source_name, batch)?;
        }
        Ok(())
    }

    /// Adds documents already parsed (the operator's stores: no YAML text in between), as
    /// [`InputLoader::add_yaml`] adds a file's.
    pub fn add_values(&mut self, source_name: &str, values: Vec<Value>) -> Result<(), InputError> {
        let mut values = values.into_iter().enumerate().peekable();
        while values.peek().is_some() {
            let batch: Vec<(usize, Value)> = values.by_ref().take(CHECK_BATCH).collect();
            self.add_batch(source_name, batch)?;
        }
        Ok(())
    }

    /// Checks a batch's custom resources on every core, then adds its documents in order.
    fn add_batch(
        &mut self,
        source_name: &str,
        batch: Vec<(usize, Value)>,
    ) -> Result<(), InputError> {
        let checked = self.rules.check_all(&batch);
        for ((index, value), checked) in batch.into_iter().zip(checked) {
            self.add_value(source_name, index, value, checked)?;
        }
        Ok(())
    }

    /// Adds a master key ring document (`master-key.yaml` of a config directory).
    pub fn add_key_ring_file(&mut self, source_name: &str, bytes: &[u8]) -> Result<(), InputError> {
        let ring = KeyRing::from_yaml(bytes).map_err(|error| InputError::KeyRing {
            source_name: source_name.to_owned(),
            error,
        })?;
        if replaced_by_another(&mut self.input.previous.key_ring, ring) {
            self.warn(format!(
                "master key ring given more than once; using the one from {source_name}"
            ));
        }
        Ok(())
    }

    /// Adds a key store document (`keys.yaml` of a config directory).
    pub fn add_key_store_file(
        &mut self,
        source_name: &str,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        let store = key_store(source_name, bytes)?;
        if replaced_by_another(&mut self.input.previous.key_store, store) {
            self.warn(format!(
                "key store given more than once; using the one from {source_name}"
            ));
        }
        Ok(())
    }

    /// Adds a key store shard (`keys-NNN.yaml`, or its Secret): its rows join the previous key
    /// store's, whichever of the shards and the index come first.
    pub fn add_key_store_shard(
        &mut self,
        source_name: &str,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        self.key_shard_rows
            .extend(key_store(source_name, bytes)?.rows);
        Ok(())
    }

    /// Warnings collected so far (skipped documents, overridden duplicates).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The accumulated inputs.
    pub fn finish(mut self) -> RenderInput {
        if !self.key_shard_rows.is_empty() {
            let store = self.input.previous.key_store.get_or_insert_default();
            store.rows.append(&mut self.key_shard_rows);
            store.sort();
        }
        self.input
    }

    fn warn(&mut self, message: String) {
        tracing::warn!(warning = ?message, "render input");
        self.warnings.push(message);
    }

    fn add_value(
        &mut self,
        source_name: &str,
        index: usize,
        value: Value,
        checked: Option<Checked>,
    ) -> Result<(), InputError> {
        if value.is_null() {
            return Ok(());
        }
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if kind == "List" || kind.ends_with("List") && value.get("items").is_some() {
            if let Some(Value::Sequence(items)) = value.get("items").cloned() {
                for item in items {
                    self.add_value(source_name, index, item, None)?;
                }
            }
            return Ok(());
        }
        let metadata = value.get("metadata").and_then(Value::as_mapping);
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        let description = format!(
            "{source_name} document {}: {kind} {namespace}/{}",
            index + 1,
            name.as_deref().unwrap_or("<unnamed>")
        );

        match (api_version.as_str(), kind.as_str()) {
            (API_VERSION, REPORT_KIND) => {
                match serde_yaml::from_value::<RenderReport>(value) {
                    Ok(report) => self.input.previous.report = Some(report),
                    Err(e) => {
                        let message =
                            format!("{source_name}: ignoring unreadable {REPORT_KIND}: {e}");
                        self.warn(message);
                    }
                }
                return Ok(());
            }
            _ if name.is_none() => {
                let message = format!("{}: skipped, metadata.name is missing", description);
                self.warn(message);
                return Ok(());
            }
            _ => {}
        }
        let name = name.unwrap_or_default();
        if let Some(problem) = invalid_identity(&kind, &namespace, &name) {
            let message = format!("{description}: skipped, {problem}");
            self.warn(message);
            return Ok(());
        }
        let key = ObjectKey::new(namespace, name);
        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Namespace") => {
                let meta = NamespaceMeta {
                    labels: string_map(metadata.and_then(|m| m.get("labels"))),
                    annotations: string_map(metadata.and_then(|m| m.get("annotations"))),
                };
                self.input.namespaces.insert(key.name, meta);
            }
            ("v1", "Secret") => self.add_secret(source_name, key, &value)?,
            ("v1", "ConfigMap")
                if key.namespace == self.platform_namespace
                    && (key.name == CONFIG_MAP_NAME
                        || crate::config::shards::is_config_map(&key.name)) =>
            {
                // An earlier render's output (the config, or one of its shards): derived
                // entirely from the other inputs.
            }
            ("v1", "ConfigMap")
                if key.namespace == self.platform_namespace
                    && key.name == super::platform::PLATFORM_CONFIG_MAP =>
            {
                let text = value
                    .get("data")
                    .and_then(|data| data.get(super::platform::PLATFORM_FILE))
                    .and_then(Value::as_str);
                // Present without the key: empty text, refused by name.
                self.input.platform_config = Some(text.unwrap_or_default().to_owned());
            }
            (API_VERSION, "LlmProvider") => {
                let checked = match checked {
                    Some(Checked::Provider(checked)) => Some(*checked),
                    _ => None,
                };
                self.add_resource(ResourceKind::LlmProvider, key, value, checked, |input| {
                    &mut input.providers
                });
            }
            (API_VERSION, "LlmTenant") => {
                let checked = match checked {
                    Some(Checked::Tenant(checked)) => Some(*checked),
                    _ => None,
                };
                self.add_resource(ResourceKind::LlmTenant, key, value, checked, |input| {
                    &mut input.tenants
                });
            }
            (API_VERSION, "RoutingPolicy") => {
                let checked = match checked {
                    Some(Checked::Policy(checked)) => Some(*checked),
                    _ => None,
                };
                self.add_resource(ResourceKind::RoutingPolicy, key, value, checked, |input| {
                    &mut input.policies
                });
            }
            _ => {
                let message = format!(
                    "{}: skipped, not an input of render (apiVersion {api_version:?})",
                    description
                );
                self.warn(message);
            }
        }
        Ok(())
    }

    fn add_secret(
        &mut self,
        source_name: &str,
        key: ObjectKey,
        value: &Value,
    ) -> Result<(), InputError> {
        let secret = decode_secret(value);
        if key.namespace == self.platform_namespace && key.name == MASTER_KEY_SECRET_NAME {
            let bytes = secret
                .data
                .get(MASTER_KEY_FILE)
                .map(|v| v.as_slice())
                .unwrap_or_default();
            return self.add_key_ring_file(source_name, bytes);
        }
        if key.namespace == self.platform_namespace && key.name == KEY_STORE_SECRET_NAME {
            let bytes = secret
                .data
                .get(KEY_STORE_FILE)
                .map(|v| v.as_slice())
                .unwrap_or_default();
            return self.add_key_store_file(source_name, bytes);
        }
        if key.namespace == self.platform_namespace
            && crate::config::shards::is_keys_secret(&key.name)
        {
            for (name, bytes) in &secret.data {
                if crate::config::shards::is_keys_file(name) {
                    self.add_key_store_shard(source_name, bytes)?;
                }
            }
            return Ok(());
        }
        for bad in &secret.undecodable {
            let message =
                format!("{source_name}: Secret {key}: data key {bad:?} is not valid base64");
            self.warn(message);
        }
        self.input.secrets.insert(key, secret);
        Ok(())
    }

    /// Adds a custom resource: its check (`checked`, when done ahead on a worker thread, else
    /// done here) decides whether it is stored or reported invalid.
    fn add_resource<K>(
        &mut self,
        kind: ResourceKind,
        key: ObjectKey,
        value: Value,
        checked: Option<Result<K, String>>,
        store: impl FnOnce(&mut RenderInput) -> &mut BTreeMap<ObjectKey, K>,
    ) where
        K: DeserializeOwned + serde::Serialize + kube::Resource,
    {
        let generation = value
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64);
        self.input
            .invalid
            .retain(|r| !(r.kind == kind && r.key == key));
        let parsed = checked.unwrap_or_else(|| self.rules.resource(kind, &value));
        match parsed {
            Ok(mut resource) => {
                let meta = resource.meta_mut();
                meta.namespace = Some(key.namespace.clone());
                if store(&mut self.input)
                    .insert(key.clone(), resource)
                    .is_some()
                {
                    tracing::debug!(kind = kind.as_str(), key = ?key.to_string(), "given twice; the later one wins");
                }
            }
            Err(message) => {
                store(&mut self.input).remove(&key);
                let text = format!("{} {key} is invalid: {message}", kind.as_str());
                self.warn(text);
                self.input.invalid.push(InvalidResource {
                    kind,
                    key,
                    generation,
                    message,
                });
            }
        }
    }
}

/// Fields present in what the user wrote but dropped by the typed parse: typos and fields of
/// another version. The API server refuses them under kubectl's default strict field
/// validation, so render does too. Empty values are ignored (they are dropped by design).
fn unknown_fields(
    given: Option<&serde_json::Value>,
    parsed: Option<&serde_json::Value>,
    path: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value as Json;
    let is_empty = |v: &Json| match v {
        Json::Null => true,
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
        _ => false,
    };
    match (given, parsed) {
        (Some(Json::Object(given)), Some(Json::Object(parsed))) => {
            for (field, value) in given {
                let child = format!("{path}.{field}");
                match parsed.get(field) {
                    None if !is_empty(value) => out.push(child),
                    None => {}
                    Some(parsed_value) => {
                        unknown_fields(Some(value), Some(parsed_value), &child, out)
                    }
                }
            }
        }
        (Some(Json::Object(given)), None) => {
            out.extend(
                given
                    .iter()
                    .filter(|(_, v)| !is_empty(v))
                    .map(|(k, _)| format!("{path}.{k}")),
            );
        }
        (Some(Json::Array(given)), Some(Json::Array(parsed))) => {
            for (index, value) in given.iter().enumerate() {
                unknown_fields(
                    Some(value),
                    parsed.get(index),
                    &format!("{path}[{index}]"),
                    out,
                );
            }
        }
        _ => {}
    }
}

/// Kubernetes naming rules, checked before a name is used anywhere (file paths included):
/// namespaces are DNS-1123 labels, names of these kinds DNS-1123 subdomains.
fn invalid_identity(kind: &str, namespace: &str, name: &str) -> Option<String> {
    if !is_dns_label(namespace) {
        return Some(format!(
            "namespace {namespace:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
        ));
    }
    let valid_name = if kind == "Namespace" {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if !valid_name {
        return Some(format!(
            "name {name:?} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.', at most 253)"
        ));
    }
    None
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

fn yaml_error(source_name: &str, error: &serde_yaml::Error) -> InputError {
    InputError::Yaml {
        source_name: source_name.to_owned(),
        location: error
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default(),
        message: error.to_string(),
    }
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_mapping)
        .map(|mapping| {
            mapping
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar_string(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Decodes `data` (base64) and `stringData` (plain, which wins, as in the API server).
fn decode_secret(value: &Value) -> SecretValues {
    let mut secret = SecretValues::default();
    let empty = Mapping::new();
    let data = value
        .get("data")
        .and_then(Value::as_mapping)
        .unwrap_or(&empty);
    for (k, v) in data {
        let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
            continue;
        };
        let compact: String = v.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        match STANDARD.decode(compact.as_bytes()) {
            Ok(bytes) => {
                secret.data.insert(k.to_owned(), Zeroizing::new(bytes));
            }
            Err(_) => secret.undecodable.push(k.to_owned()),
        }
    }
    let string_data = value
        .get("stringData")
        .and_then(Value::as_mapping)
        .unwrap_or(&empty);
    for (k, v) in string_data {
        let (Some(k), Some(v)) = (k.as_str(), scalar_string(v)) else {
            continue;
        };
        secret.undecodable.retain(|bad| bad != k);
        secret
            .data
            .insert(k.to_owned(), Zeroizing::new(v.into_bytes()));
    }
    secret
}
