//! The operator's decisions, without I/O: a small in-memory cluster (the reflector stores'
//! contents) is rendered and planned; the planned writes are applied back to it, as the API
//! server would, and the next pass is planned against the result.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use dgidgi::config::{KEY_STORE_FILE, KEY_STORE_SECRET_NAME};
use dgidgi::crypto::KeyStore;
use dgidgi::operator::incremental::{Memo, PassKind, decide_incrementally};
use dgidgi::operator::observed::{Observed, key_of};
use dgidgi::operator::plan::Write;
use dgidgi::operator::platform::{PlatformTiers, TiersInForce};
use dgidgi::operator::reconcile::{Decision, decide};
use dgidgi::render::{ObjectKey, RenderContext, ResourceKind};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::DynamicObject;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};

const PLATFORM: &str = "dgidgi-system";

/// The stores' contents, changed by the writes a pass plans (as the API server would apply
/// them), plus the Events published.
#[derive(Default)]
struct Cluster {
    observed: Observed,
    events: Vec<dgidgi::operator::plan::EventWrite>,
    seed: u64,
    /// The tiers in force across passes, as the controller keeps them.
    platform: PlatformTiers,
    /// The operator's `--config-shards` (0 here: the default, 1).
    shards: u32,
    /// What the incremental pass kept from the last one.
    memo: Option<Memo>,
    /// Which kind of pass the last incremental one was.
    last_pass: Option<PassKind>,
}

fn to_json(yaml: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

impl Cluster {
    fn from_dir(dir: &str) -> Self {
        let mut cluster = Cluster::default();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            cluster.apply_yaml(&std::fs::read_to_string(file).unwrap());
        }
        cluster
    }

    /// `kubectl apply` of YAML: Secrets' stringData becomes data, custom resources get a uid
    /// and a generation that grows when their spec changes.
    fn apply_yaml(&mut self, yaml: &str) {
        for mut doc in to_json(yaml) {
            match doc["kind"].as_str().unwrap() {
                "Namespace" => {
                    let ns: Namespace = serde_json::from_value(doc).unwrap();
                    self.observed.namespaces.insert(key_of(&ns), Arc::new(ns));
                }
                "ConfigMap" => {
                    let cm: ConfigMap = serde_json::from_value(doc).unwrap();
                    self.observed.config_maps.insert(key_of(&cm), Arc::new(cm));
                }
                "Secret" => {
                    if let Some(Value::Object(plain)) = doc.get("stringData").cloned() {
                        let data = doc["data"].as_object().cloned().unwrap_or_default();
                        let mut data = data;
                        for (k, v) in plain {
                            let v = base64::engine::general_purpose::STANDARD
                                .encode(v.as_str().unwrap());
                            data.insert(k, Value::String(v));
                        }
                        doc["data"] = Value::Object(data);
                        doc.as_object_mut().unwrap().remove("stringData");
                    }
                    let secret: Secret = serde_json::from_value(doc).unwrap();
                    self.observed
                        .secrets
                        .insert(key_of(&secret), Arc::new(secret));
                }
                kind => {
                    let kind = match kind {
                        "LlmProvider" => ResourceKind::LlmProvider,
                        "LlmTenant" => ResourceKind::LlmTenant,
                        "RoutingPolicy" => ResourceKind::RoutingPolicy,
                        other => panic!("unexpected kind {other}"),
                    };
                    let mut object: DynamicObject = serde_json::from_value(doc).unwrap();
                    let key = key_of(&object);
                    let map = self.resources_mut(kind);
                    let (generation, status) = match map.get(&key) {
                        Some(old) if old.data["spec"] == object.data["spec"] => {
                            (old.metadata.generation, old.data.get("status").cloned())
                        }
                        Some(old) => (
                            old.metadata.generation.map(|g| g + 1),
                            old.data.get("status").cloned(),
                        ),
                        None => (Some(1), None),
                    };
                    object.metadata.uid = Some(format!("uid-{}-{}", key.namespace, key.name));
                    object.metadata.generation = generation;
                    if let Some(status) = status {
                        object.data["status"] = status;
                    }
                    map.insert(key, Arc::new(object));
                }
            }
        }
    }

    fn resources_mut(
        &mut self,
        kind: ResourceKind,
    ) -> &mut BTreeMap<ObjectKey, Arc<DynamicObject>> {
        match kind {
            ResourceKind::LlmProvider => &mut self.observed.providers,
            ResourceKind::LlmTenant => &mut self.observed.tenants,
            ResourceKind::RoutingPolicy => &mut self.observed.policies,
        }
    }

    /// One pass: decide, then apply the writes as the API server would.
    fn pass(&mut self) -> Decision {
        self.seed += 1;
        let mut ctx = RenderContext::new(PLATFORM, common::now());
        ctx.shards = self.shards.max(1);
        ctx.tiers = match self.platform.update_from(&self.observed, PLATFORM) {
            TiersInForce::Configured(tiers) | TiersInForce::LastGood(tiers, _) => tiers,
            TiersInForce::Hold(problem) => panic!("no last good configuration: {problem}"),
        };
        let decision = decide(
            &self.observed,
            &ctx,
            &mut ChaCha20Rng::seed_from_u64(self.seed),
        )
        .expect("a pass decides");
        // Every pass of every test also checks the incremental pass against the full one:
        // the same writes, in the same order, from the output kept since the last pass.
        let (incremental, kind) = decide_incrementally(
            &self.observed,
            &ctx,
            &mut ChaCha20Rng::seed_from_u64(self.seed),
            &mut self.memo,
            std::time::Duration::MAX,
        )
        .expect("an incremental pass decides");
        assert_eq!(
            kinds(&incremental.writes),
            kinds(&decision.writes),
            "the {kind:?} pass writes what the full pass writes"
        );
        assert!(
            incremental.writes == decision.writes,
            "the {kind:?} pass writes the same content as the full pass"
        );
        assert_eq!(incremental.not_ready, decision.not_ready);
        self.last_pass = Some(kind);
        self.apply(&decision.writes);
        decision
    }

    /// Applies writes as the API server would, keeping the Events.
    fn apply(&mut self, writes: &[Write]) {
        self.observed.apply_writes(writes);
        for write in writes {
            if let Write::Event(event) = write {
                self.events.push(event.clone());
            }
        }
    }

    fn status(&self, kind: ResourceKind, namespace: &str, name: &str) -> Value {
        let key = ObjectKey::new(namespace, name);
        self.observed.resources(kind)[&key].data["status"].clone()
    }

    fn condition(&self, kind: ResourceKind, namespace: &str, name: &str, type_: &str) -> Value {
        self.status(kind, namespace, name)["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn key_store(&self) -> KeyStore {
        let secret = &self.observed.secrets[&ObjectKey::new(PLATFORM, KEY_STORE_SECRET_NAME)];
        KeyStore::from_yaml(&secret.data.as_ref().unwrap()[KEY_STORE_FILE].0).unwrap()
    }

    fn gateway_yaml(&self) -> String {
        let cm =
            &self.observed.config_maps[&ObjectKey::new(PLATFORM, dgidgi::config::CONFIG_MAP_NAME)];
        cm.data.as_ref().unwrap()["gateway.yaml"].clone()
    }
}

fn quickstart() -> Cluster {
    let mut cluster =
        Cluster::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart"));
    cluster.pass();
    cluster
}

/// Random changes to many namespaces, one or a few at a time: every pass is checked against a
/// full one (in [`Cluster::pass`]); this checks that all of them were incremental, and covers
/// what crosses namespaces: tier labels the platform rules select on, an access key copied from
/// another namespace, a namespace deleted whole.
#[test]
fn random_changes_render_incrementally_as_a_full_pass_would() {
    use rand::Rng as _;
    let mut cluster = quickstart();
    // Sharded, so the shards kept between passes are exercised too.
    cluster.shards = 4;
    let tiers = ["free", "pro", "team", "enterprise"];
    let namespace = |i: usize| format!("fleet-{i:02}");
    let tenant_yaml = |ns: &str, name: &str, rpm: u32| {
        format!(
            "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec: {{source: platform, limits: {{requestsPerMinute: {rpm}}}, accessKeys: [{{name: default}}]}}\n"
        )
    };
    let own_yaml = |ns: &str, key: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: own, namespace: {ns}}}\nstringData: {{apiKey: {key}}}\n---\n\
             apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: own, namespace: {ns}}}\n\
             spec: {{type: openai, credentialsRef: {{name: own}}}}\n---\n\
             apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: byok, namespace: {ns}}}\n\
             spec: {{source: tenant, providers: [{{name: own}}]}}\n---\n\
             apiVersion: llm.dgidgi.io/v1alpha1\nkind: RoutingPolicy\nmetadata: {{name: mine, namespace: {ns}}}\n\
             spec: {{rules: [{{match: {{model: fast}}, targets: [{{provider: own, model: gpt-4o-mini}}]}}]}}\n"
        )
    };
    let namespace_yaml = |ns: &str, tier: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{llm.dgidgi.io/tier: {tier}}}}}\n"
        )
    };
    for i in 0..24 {
        let ns = namespace(i);
        cluster.apply_yaml(&namespace_yaml(&ns, tiers[i % 4]));
        cluster.apply_yaml(&tenant_yaml(&ns, "app", 10));
        if i % 3 == 0 {
            cluster.apply_yaml(&own_yaml(&ns, &format!("sk-own-{i}-0123456789")));
        }
    }
    cluster.pass();
    cluster.pass();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut incremental = 0;
    for step in 0..40 {
        let ns = namespace(rng.random_range(0..24));
        match rng.random_range(0..9) {
            0 => cluster.apply_yaml(&tenant_yaml(&ns, "app", rng.random_range(1..100))),
            1 => cluster.apply_yaml(&namespace_yaml(&ns, tiers[rng.random_range(0..4)])),
            2 => {
                cluster.observed.tenants.remove(&ObjectKey::new(&ns, "app"));
            }
            3 => cluster.apply_yaml(&tenant_yaml(&ns, &format!("extra-{step}"), 5)),
            4 => cluster.apply_yaml(&own_yaml(&ns, &format!("sk-rotated-{step}-0123456789"))),
            5 => {
                // A tenant copies another namespace's access key into its own Secret.
                let other = namespace(rng.random_range(0..24));
                let from = ObjectKey::new(&other, "app-llm-access-default");
                if let Some(secret) = cluster.observed.secrets.get(&from).cloned() {
                    let mut copy = (*secret).clone();
                    copy.metadata.namespace = Some(ns.clone());
                    cluster
                        .observed
                        .secrets
                        .insert(ObjectKey::new(&ns, "app-llm-access-default"), Arc::new(copy));
                }
            }
            6 => {
                cluster
                    .observed
                    .secrets
                    .remove(&ObjectKey::new(&ns, "app-llm-access-default"));
            }
            7 => {
                // The namespace deleted with everything in it.
                let gone = |key: &ObjectKey| key.namespace == ns;
                cluster.observed.namespaces.remove(&ObjectKey::new("", &ns));
                cluster.observed.tenants.retain(|k, _| !gone(k));
                cluster.observed.providers.retain(|k, _| !gone(k));
                cluster.observed.policies.retain(|k, _| !gone(k));
                cluster.observed.secrets.retain(|k, _| !gone(k));
            }
            _ => cluster.apply_yaml(&format!(
                "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: app, namespace: {ns}}}\n\
                 spec: {{source: platform, limits: {{requestsPerMinute: -{step}}}}}\n"
            )),
        }
        if rng.random_bool(0.1) {
            cluster.apply_yaml(&namespace_yaml(
                &namespace(rng.random_range(0..24)),
                tiers[rng.random_range(0..4)],
            ));
        }
        // The change, then the pass that sees the statuses and Secrets it wrote.
        for _ in 0..2 {
            cluster.pass();
            incremental += usize::from(matches!(cluster.last_pass, Some(PassKind::Incremental(_))));
        }
    }
    // None of the changes touches the platform namespace, so none needs a full pass (the
    // platform rules' statuses, which change with the namespaces they select, do not count).
    assert_eq!(incremental, 80, "every pass was incremental");

    // A tenant copies another namespace's key into its own Secret, and comes first in render
    // order: render gives the key to the first claimant, so the holder's namespace, unchanged,
    // is rendered too.
    let (holder, copier) = ("shared-b", "shared-a");
    for ns in [holder, copier] {
        cluster.apply_yaml(&namespace_yaml(ns, "pro"));
        cluster.apply_yaml(&tenant_yaml(ns, "app", 10));
    }
    cluster.pass();
    cluster.pass();
    let held = cluster.observed.secrets[&ObjectKey::new(holder, "app-llm-access-default")].clone();
    let mut copy = (*held).clone();
    copy.metadata.namespace = Some(copier.to_owned());
    cluster.observed.secrets.insert(
        ObjectKey::new(copier, "app-llm-access-default"),
        Arc::new(copy),
    );
    cluster.pass();
    assert_eq!(cluster.last_pass, Some(PassKind::Incremental(2)));
    assert_eq!(
        cluster.condition(ResourceKind::LlmTenant, holder, "app", "Ready")["reason"],
        "AccessKeyRejected"
    );
    // The refused Secret was deleted; the next pass generates a new key for it, rendering
    // both sides of the collision together.
    cluster.pass();
    assert_eq!(cluster.last_pass, Some(PassKind::Incremental(2)));
    cluster.pass();
    assert_eq!(
        cluster.condition(ResourceKind::LlmTenant, holder, "app", "Ready")["status"],
        "True"
    );
}

/// A namespace whose writes were refused is decided again by the next pass, alone; a refusal
/// in the platform namespace makes the next pass a full one.
#[test]
fn a_refused_namespace_is_decided_again_and_only_it() {
    let mut cluster = quickstart();
    cluster.pass();
    let memo = cluster.memo.as_mut().expect("a pass keeps its output");
    assert!(memo.forget_namespaces(&["team-acme".to_owned()].into()));
    cluster.pass();
    assert_eq!(cluster.last_pass, Some(PassKind::Incremental(1)));
    cluster.pass();
    assert_eq!(cluster.last_pass, Some(PassKind::Incremental(0)));
    let memo = cluster.memo.as_mut().expect("a pass keeps its output");
    assert!(!memo.forget_namespaces(&[PLATFORM.to_owned()].into()));
}

fn kinds(writes: &[Write]) -> Vec<String> {
    writes.iter().map(|w| format!("{w:?}")).collect()
}

#[test]
fn first_pass_writes_key_material_then_config_then_statuses_then_events() {
    let mut cluster =
        Cluster::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart"));
    let decision = cluster.pass();
    let writes = kinds(&decision.writes);
    assert!(decision.key_ring_generated);
    assert_eq!(writes[0], "ApplySecret(dgidgi-system/dgidgi-master-key)");
    assert_eq!(writes[1], "ApplySecret(dgidgi-system/dgidgi-gateway-keys)");
    let config_at = writes
        .iter()
        .position(|w| w == "ApplyConfigMap(dgidgi-system/dgidgi-gateway-config)")
        .expect("the ConfigMap is applied");
    assert!(
        writes[2..config_at]
            .iter()
            .all(|w| w.contains("-llm-access-"))
    );
    assert!(writes.contains(&"ApplySecret(team-acme/acme-llm-access-default)".to_owned()));
    assert!(writes.contains(&"ApplySecret(team-acme/acme-llm-access-ci)".to_owned()));
    let first_status = writes
        .iter()
        .position(|w| w.starts_with("Status("))
        .unwrap();
    let first_event = writes.iter().position(|w| w.starts_with("Event(")).unwrap();
    assert!(config_at < first_status && first_status < first_event);
    // Every custom resource gets a status, and one Ready Event on its first status.
    let resources = cluster.observed.providers.len()
        + cluster.observed.tenants.len()
        + cluster.observed.policies.len();
    assert_eq!(
        writes.iter().filter(|w| w.starts_with("Status(")).count(),
        resources
    );
    assert_eq!(cluster.events.len(), resources);

    // Access key Secrets are owned by their tenant, so deleting it collects them.
    let access = &cluster.observed.secrets[&ObjectKey::new("team-acme", "acme-llm-access-ci")];
    let owner = &access.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("LlmTenant", "acme", "uid-team-acme-acme")
    );

    // Status: tier, effective source and limits, access key Secrets, observedGeneration.
    let acme = cluster.status(ResourceKind::LlmTenant, "team-acme", "acme");
    assert_eq!(acme["tier"], "pro");
    assert_eq!(acme["effectiveSource"], "platform");
    assert_eq!(acme["effectiveLimits"]["requestsPerMinute"], 30);
    assert_eq!(
        acme["accessKeySecrets"],
        json!(["acme-llm-access-default", "acme-llm-access-ci"])
    );
    let ready = cluster.condition(ResourceKind::LlmTenant, "team-acme", "acme", "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["observedGeneration"], 1);
}

/// With `--config-shards`, a change to one tenant writes its shard and the index, a rotated
/// tenant key its key shard and the index, and an unchanged cluster nothing.
#[test]
fn with_shards_one_tenants_change_writes_its_shard_and_the_index() {
    use dgidgi::config::shards;
    let mut cluster =
        Cluster::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart"));
    cluster.shards = 4;
    let first = kinds(&cluster.pass().writes);
    for number in 0..4 {
        assert!(first.contains(&format!(
            "ApplyConfigMap({PLATFORM}/{})",
            shards::config_map_name(number)
        )));
        assert!(first.contains(&format!(
            "ApplySecret({PLATFORM}/{})",
            shards::keys_secret_name(number)
        )));
    }
    // The shards go before the index that names them.
    let index = first
        .iter()
        .position(|w| w == &format!("ApplyConfigMap({PLATFORM}/dgidgi-gateway-config)"))
        .unwrap();
    assert!(
        first[..index]
            .iter()
            .filter(|w| w.starts_with("ApplyConfigMap"))
            .count()
            == 4
    );
    assert!(
        cluster.pass().writes.is_empty(),
        "an unchanged cluster writes nothing"
    );

    cluster.apply_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: late-comer}\n---\n\
         apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: t, namespace: late-comer}\nspec: {}\n",
    );
    let writes: Vec<String> = kinds(&cluster.pass().writes)
        .into_iter()
        .filter(|w| w.starts_with("ApplyConfigMap") || w.starts_with("ApplySecret(dgidgi-system"))
        .collect();
    assert_eq!(
        writes,
        [
            format!(
                "ApplyConfigMap({PLATFORM}/{})",
                shards::config_map_name(shards::bucket("late-comer/t", 4))
            ),
            format!("ApplyConfigMap({PLATFORM}/dgidgi-gateway-config)"),
        ]
    );

    cluster.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: globex-openai, namespace: team-globex}\n\
         stringData: {apiKey: sk-globex-rotated-key}\n",
    );
    assert_eq!(
        kinds(&cluster.pass().writes),
        [
            format!(
                "ApplySecret({PLATFORM}/{})",
                shards::keys_secret_name(shards::bucket("team-globex/my-openai", 4))
            ),
            format!("ApplyConfigMap({PLATFORM}/dgidgi-gateway-config)"),
        ],
        "a rotated tenant key rewrites its key shard, and the index naming its digest"
    );
}

#[test]
fn a_pass_over_unchanged_stores_writes_nothing() {
    let mut cluster = quickstart();
    let decision = cluster.pass();
    assert_eq!(kinds(&decision.writes), Vec::<String>::new());
}

#[test]
fn a_secret_change_rotates_exactly_one_key_store_row() {
    let mut cluster = quickstart();
    let before = cluster.key_store();
    cluster.apply_yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: globex-openai, namespace: team-globex}\n\
         stringData: {apiKey: sk-globex-rotated-key}\n",
    );
    let decision = cluster.pass();
    assert_eq!(
        kinds(&decision.writes),
        vec!["ApplySecret(dgidgi-system/dgidgi-gateway-keys)"]
    );
    let after = cluster.key_store();
    assert_eq!(before.rows.len(), after.rows.len());
    let changed: Vec<_> = before
        .rows
        .iter()
        .zip(&after.rows)
        .filter(|(b, a)| b != a)
        .collect();
    assert_eq!(changed.len(), 1, "exactly one row changes");
    let (old, new) = changed[0];
    assert_eq!(new.id, "team-globex/my-openai");
    assert_ne!(old.encrypted_value, new.encrypted_value);
    assert_eq!(old.created_at, new.created_at);
    assert!(old.rotated_at.is_none());
    assert!(new.rotated_at.is_some());
    // And the next pass is quiet again.
    assert!(cluster.pass().writes.is_empty());
}

#[test]
fn an_invalid_tenant_is_reported_on_itself_while_the_others_render() {
    let mut cluster = quickstart();
    cluster.apply_yaml(
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\n\
         metadata: {name: broken, namespace: team-acme}\n\
         spec: {source: platform, limits: {requestsPerMinute: -5}}\n",
    );
    let decision = cluster.pass();
    let writes = kinds(&decision.writes);
    assert!(writes.contains(&"Status(LlmTenant team-acme/broken)".to_owned()));
    let ready = cluster.condition(ResourceKind::LlmTenant, "team-acme", "broken", "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert_eq!(ready["observedGeneration"], 1);
    let event = cluster.events.last().unwrap();
    assert!(event.warning);
    assert_eq!(event.reason, "InvalidSpec");
    // The others are untouched and still served.
    assert!(!writes.iter().any(|w| w.contains("team-acme/acme")));
    let gateway = cluster.gateway_yaml();
    assert!(gateway.contains("team-acme/acme"));
    assert!(gateway.contains("team-globex/globex"));
    assert!(!gateway.contains("team-acme/broken"));
}

#[test]
fn a_tenant_naming_a_platform_secret_is_refused_and_the_value_appears_nowhere() {
    let mut cluster = quickstart();
    cluster.apply_yaml(
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\n\
         metadata: {name: stolen, namespace: team-acme}\n\
         spec: {type: openai, credentialsRef: {name: openai-api-key, key: apiKey}}\n",
    );
    let decision = cluster.pass();
    let ready = cluster.condition(ResourceKind::LlmProvider, "team-acme", "stolen", "Ready");
    assert_eq!(ready["status"], "False", "{ready}");
    assert!(
        !cluster
            .key_store()
            .rows
            .iter()
            .any(|r| r.id == "team-acme/stolen")
    );
    // The platform key's value is in no write: not in the ConfigMap, statuses or Events.
    let everything: String = decision
        .writes
        .iter()
        .map(|w| match w {
            Write::ApplyConfigMap(cm) => serde_json::to_string(cm).unwrap(),
            Write::ApplySecret(s) => serde_json::to_string(s).unwrap(),
            Write::Status { status, .. } => status.to_string(),
            Write::Event(e) => format!("{} {}", e.reason, e.note),
            Write::DeleteSecret(key) => key.to_string(),
        })
        .collect();
    assert!(!everything.is_empty());
    assert!(!everything.contains("sk-quickstart-placeholder-openai"));
    let encoded =
        base64::engine::general_purpose::STANDARD.encode("sk-quickstart-placeholder-openai");
    assert!(!everything.contains(&encoded));
}

#[test]
fn a_namespace_tier_label_change_updates_effective_limits() {
    let mut cluster = quickstart();
    cluster.apply_yaml(
        "apiVersion: v1\nkind: Namespace\n\
         metadata: {name: team-globex, labels: {llm.dgidgi.io/tier: free}}\n\
         ---\napiVersion: v1\nkind: Namespace\n\
         metadata: {name: team-acme, labels: {llm.dgidgi.io/tier: team}}\n",
    );
    let decision = cluster.pass();
    let writes = kinds(&decision.writes);
    assert!(writes.contains(&"ApplyConfigMap(dgidgi-system/dgidgi-gateway-config)".to_owned()));
    assert!(writes.contains(&"Status(LlmTenant team-acme/acme)".to_owned()));
    let acme = cluster.status(ResourceKind::LlmTenant, "team-acme", "acme");
    assert_eq!(acme["tier"], "team");
    assert_eq!(acme["effectiveLimits"]["tokensPerDay"], 2_000_000);
    assert_eq!(acme["effectiveLimits"]["concurrent"], 50);
    // The tenant's tighter RPM still wins over the team tier's 200.
    assert_eq!(acme["effectiveLimits"]["requestsPerMinute"], 30);
}

/// The platform configuration with the pro tier's numbers changed and the rest as default.
const PLATFORM_CONFIG: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dgidgi-platform, namespace: dgidgi-system}\ndata:\n  platform.yaml: |\n    tiers:\n      - {name: free, requestsPerMinute: 10, tokensPerDay: 50000, concurrent: 2}\n      - {name: pro, requestsPerMinute: 100, tokensPerDay: 900000, concurrent: 12}\n      - {name: team, requestsPerMinute: 200, tokensPerDay: 2000000, concurrent: 50}\n      - {name: enterprise, custom: true, requestsPerMinute: 200, tokensPerDay: 2000000, concurrent: 50}\n";

#[test]
fn a_platform_configuration_change_updates_the_affected_tenants_and_nothing_else() {
    let mut cluster = quickstart();
    cluster.apply_yaml(PLATFORM_CONFIG);
    let decision = cluster.pass();
    let writes = kinds(&decision.writes);
    // Only the pro tenant's limits changed: the gateway config and its status, nothing else.
    assert_eq!(
        writes,
        [
            "ApplyConfigMap(dgidgi-system/dgidgi-gateway-config)",
            "Status(LlmTenant team-acme/acme)"
        ],
        "{writes:?}"
    );
    let acme = cluster.status(ResourceKind::LlmTenant, "team-acme", "acme");
    assert_eq!(acme["effectiveLimits"]["tokensPerDay"], 900_000);
    assert_eq!(acme["effectiveLimits"]["concurrent"], 12);
    // The tenant's own tighter RPM (30) still wins over the tier's 100.
    assert_eq!(acme["effectiveLimits"]["requestsPerMinute"], 30);
    assert!(cluster.pass().writes.is_empty(), "settled");

    // A broken configuration changes nothing: the last good one stays in force.
    cluster.apply_yaml(&PLATFORM_CONFIG.replace("requestsPerMinute: 100", "requestsPerMinute: 0"));
    let decision = cluster.pass();
    assert!(decision.writes.is_empty(), "{:?}", kinds(&decision.writes));
    assert_eq!(
        cluster.status(ResourceKind::LlmTenant, "team-acme", "acme")["effectiveLimits"]["tokensPerDay"],
        900_000
    );
    // So does an operator that restarts while it is broken: it finds the tiers in force
    // recorded on the gateway ConfigMap. Before, it had no last good and rendered nothing.
    cluster.platform = PlatformTiers::default();
    let decision = cluster.pass();
    assert!(decision.writes.is_empty(), "{:?}", kinds(&decision.writes));

    // Renaming the pro tier leaves team-acme naming no tier: the most restrictive one, said so.
    cluster.apply_yaml(&PLATFORM_CONFIG.replace("name: pro,", "name: growth,"));
    cluster.pass();
    let acme = cluster.status(ResourceKind::LlmTenant, "team-acme", "acme");
    assert_eq!(acme["tier"], "free");
    assert_eq!(acme["effectiveLimits"]["tokensPerDay"], 50_000);
    let resolved = cluster.condition(ResourceKind::LlmTenant, "team-acme", "acme", "TierResolved");
    assert_eq!(resolved["status"], "False");
    let message = resolved["message"].as_str().unwrap();
    assert!(
        message.contains("\"pro\" names no configured tier"),
        "{message}"
    );
    assert!(
        message.contains("using the most restrictive, free"),
        "{message}"
    );
}

#[test]
fn deleting_a_tenant_removes_its_key_store_rows_and_access_secret() {
    // Key store rows belong to LlmProviders (`<namespace>/<provider>`); the tenant's are those
    // in its namespace, deleted with it (as when its namespace goes).
    let mut cluster = quickstart();
    assert!(
        cluster
            .key_store()
            .rows
            .iter()
            .any(|r| r.tenant_id == "team-globex")
    );
    let globex = ObjectKey::new("team-globex", "globex");
    cluster.observed.tenants.remove(&globex);
    cluster
        .observed
        .providers
        .remove(&ObjectKey::new("team-globex", "my-openai"));
    let decision = cluster.pass();
    let writes = kinds(&decision.writes);
    assert!(writes.contains(&"DeleteSecret(team-globex/globex-llm-access-default)".to_owned()));
    assert!(
        !cluster
            .observed
            .secrets
            .contains_key(&ObjectKey::new("team-globex", "globex-llm-access-default"))
    );
    assert!(
        !cluster
            .key_store()
            .rows
            .iter()
            .any(|r| r.tenant_id == "team-globex"),
        "{:?}",
        cluster.key_store().rows
    );
    assert!(!cluster.gateway_yaml().contains("team-globex/globex"));
    assert!(cluster.pass().writes.is_empty());
}

#[test]
fn usage_written_by_the_poller_survives_a_render_pass() {
    let mut cluster = quickstart();
    let key = ObjectKey::new("team-acme", "acme");
    let mut acme = (*cluster.observed.tenants[&key]).clone();
    acme.data["status"]["usage"] = json!({"tokensToday": 7, "spendThisMonthUsd": 0.5});
    acme.data["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"type": "BudgetExceeded", "status": "False", "reason": "WithinBudget",
            "message": "", "lastTransitionTime": "2026-11-25T12:00:00Z"}),
        );
    cluster.observed.tenants.insert(key.clone(), Arc::new(acme));
    assert!(cluster.pass().writes.is_empty());
    // A spec change rewrites the status and keeps usage and BudgetExceeded.
    cluster.apply_yaml(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/quickstart/20-tenants.yaml"
        ))
        .unwrap()
        .replace("requestsPerMinute: 30", "requestsPerMinute: 20"),
    );
    let decision = cluster.pass();
    assert!(kinds(&decision.writes).contains(&"Status(LlmTenant team-acme/acme)".to_owned()));
    let status = cluster.status(ResourceKind::LlmTenant, "team-acme", "acme");
    assert_eq!(status["usage"]["tokensToday"], 7);
    assert_eq!(status["effectiveLimits"]["requestsPerMinute"], 20);
    let budget = cluster.condition(
        ResourceKind::LlmTenant,
        "team-acme",
        "acme",
        "BudgetExceeded",
    );
    assert_eq!(budget["reason"], "WithinBudget");
    let ready = cluster.condition(ResourceKind::LlmTenant, "team-acme", "acme", "Ready");
    assert_eq!(ready["observedGeneration"], 2);
}

#[test]
fn our_own_unseen_writes_are_not_generated_twice() {
    use dgidgi::operator::observed::WriteOverlay;
    use std::time::Instant;
    let mut cluster =
        Cluster::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart"));
    let stale = cluster.observed.clone();
    let first = cluster.pass();
    let mut overlay = WriteOverlay::default();
    let now = Instant::now();
    for write in &first.writes {
        if let Write::ApplySecret(secret) = write {
            overlay.applied(secret.clone(), now);
        }
    }
    // The watch has not delivered our writes yet: the overlay stands in for them, so the
    // master key and access keys are not generated again.
    let mut observed = stale;
    overlay.apply_to(&mut observed, now);
    let ctx = RenderContext::new(PLATFORM, common::now());
    let again = decide(&observed, &ctx, &mut ChaCha20Rng::seed_from_u64(99)).unwrap();
    assert!(
        !kinds(&again.writes)
            .iter()
            .any(|w| w.starts_with("ApplySecret"))
    );
    // Once the store shows them, the overlay forgets them.
    let mut seen = cluster.observed.clone();
    overlay.apply_to(&mut seen, now);
    assert!(overlay.is_empty());
}

// ---- The writer against kube's mock API service: the exact calls, in order. ----

mod api {
    use std::time::Duration;

    use hyper::{Request, Response};
    use kube::client::Body;
    use serde_json::Value;
    use tower_test::mock::Handle;

    /// One expected call: method, path, and a check of its JSON body; the answer is the body
    /// echoed back (what an API server returns for an apply) or an error status.
    pub struct Expect {
        pub method: &'static str,
        pub path: String,
        pub check: Box<dyn Fn(&Value) + Send>,
        pub fail_with: Option<u16>,
    }

    pub fn expect(
        method: &'static str,
        path: &str,
        check: impl Fn(&Value) + Send + 'static,
    ) -> Expect {
        Expect {
            method,
            path: path.to_owned(),
            check: Box::new(check),
            fail_with: None,
        }
    }

    /// Answers the calls in order, checking each; then checks nothing else was called once
    /// every client is gone.
    pub async fn verify(mut handle: Handle<Request<Body>, Response<Body>>, calls: Vec<Expect>) {
        for (index, call) in calls.into_iter().enumerate() {
            let next = tokio::time::timeout(Duration::from_secs(30), handle.next_request()).await;
            let (request, send) = next.expect("the operator stalled").unwrap_or_else(|| {
                panic!("call {index} ({} {}) never came", call.method, call.path)
            });
            assert_eq!(request.method().as_str(), call.method, "call {index}");
            assert_eq!(request.uri().path(), call.path, "call {index}");
            let query = request.uri().query().unwrap_or_default().to_owned();
            if call.method == "PATCH" {
                assert!(
                    query.contains("fieldManager=dgidgi-operator"),
                    "call {index}: {query}"
                );
                assert!(query.contains("force=true"), "call {index}: {query}");
                assert_eq!(
                    request.headers()["content-type"],
                    "application/apply-patch+yaml",
                    "call {index}: server-side apply"
                );
            }
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            (call.check)(&body);
            let response = match call.fail_with {
                Some(code) => Response::builder().status(code).body(Body::from(
                    serde_json::to_vec(&serde_json::json!({
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "code": code, "reason": "NotFound", "message": "gone"
                    }))
                    .unwrap(),
                )),
                None => Response::builder().body(Body::from(bytes.to_vec())),
            };
            send.send_response(response.unwrap());
        }
        assert!(handle.next_request().await.is_none(), "an unexpected call");
    }
}

fn mock_client() -> (
    kube::Client,
    tower_test::mock::Handle<
        hyper::Request<kube::client::Body>,
        hyper::Response<kube::client::Body>,
    >,
) {
    let (service, handle) = tower_test::mock::pair();
    (kube::Client::new(service, "default"), handle)
}

const SMALL: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: dgidgi-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-acme, labels: {llm.dgidgi.io/tier: pro}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {name: mock, namespace: dgidgi-system}
spec: {type: mock}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {name: acme, namespace: team-acme}
spec: {source: platform}
";

async fn run_writer(
    cluster: &Cluster,
    calls: Vec<api::Expect>,
) -> dgidgi::operator::writer::WriteOutcome {
    run_writer_traced(cluster, calls, None).await
}

async fn run_writer_traced(
    cluster: &Cluster,
    calls: Vec<api::Expect>,
    traces: Option<&dgidgi::telemetry::Traces>,
) -> dgidgi::operator::writer::WriteOutcome {
    use dgidgi::operator::observed::WriteOverlay;
    use dgidgi::operator::reconcile::{Passes, reconcile_once};
    use dgidgi::operator::writer::Writer;
    let (client, handle) = mock_client();
    let verifier = tokio::spawn(api::verify(handle, calls));
    let writer = Writer::new(client, Some("test-pod".into()));
    let ctx = RenderContext::new(PLATFORM, common::now());
    let mut overlay = WriteOverlay::default();
    let (_, outcome) = reconcile_once(
        &writer,
        &cluster.observed,
        &ctx,
        &mut ChaCha20Rng::seed_from_u64(1),
        &mut overlay,
        &mut Passes::new(std::time::Duration::from_secs(300)),
        traces,
    )
    .await
    .unwrap();
    drop(writer);
    verifier.await.expect("the API calls were as expected");
    outcome
}

fn secret_named(name: &'static str) -> impl Fn(&Value) + Send {
    move |body: &Value| {
        assert_eq!(body["kind"], "Secret");
        assert_eq!(body["metadata"]["name"], name);
        assert_eq!(
            body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "dgidgi"
        );
    }
}

fn ready_status(kind: &'static str, generation: i64) -> impl Fn(&Value) + Send {
    move |body: &Value| {
        assert_eq!(body["kind"], kind);
        assert_eq!(body["apiVersion"], "llm.dgidgi.io/v1alpha1");
        let ready = body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["observedGeneration"], generation);
    }
}

fn event_on(kind: &'static str, name: &'static str) -> impl Fn(&Value) + Send {
    move |body: &Value| {
        assert_eq!(body["regarding"]["kind"], kind);
        assert_eq!(body["regarding"]["name"], name);
        assert_eq!(body["reportingController"], "dgidgi-operator");
        assert_eq!(body["reportingInstance"], "test-pod");
        assert_eq!(body["type"], "Normal");
    }
}

fn small_cluster_calls() -> Vec<api::Expect> {
    use api::expect;
    vec![
        expect(
            "PATCH",
            "/api/v1/namespaces/dgidgi-system/secrets/dgidgi-master-key",
            secret_named("dgidgi-master-key"),
        ),
        expect(
            "PATCH",
            "/api/v1/namespaces/dgidgi-system/secrets/dgidgi-gateway-keys",
            secret_named("dgidgi-gateway-keys"),
        ),
        expect(
            "PATCH",
            "/api/v1/namespaces/team-acme/secrets/acme-llm-access-default",
            |body| {
                secret_named("acme-llm-access-default")(body);
                let owner = &body["metadata"]["ownerReferences"][0];
                assert_eq!(owner["kind"], "LlmTenant");
                assert_eq!(owner["uid"], "uid-team-acme-acme");
                assert_eq!(owner["controller"], true);
            },
        ),
        expect(
            "PATCH",
            "/api/v1/namespaces/dgidgi-system/configmaps/dgidgi-gateway-config",
            |body| {
                assert_eq!(body["kind"], "ConfigMap");
                assert!(
                    body["data"]["gateway.yaml"]
                        .as_str()
                        .unwrap()
                        .contains("team-acme/acme")
                );
            },
        ),
        expect(
            "PATCH",
            "/apis/llm.dgidgi.io/v1alpha1/namespaces/dgidgi-system/llmproviders/mock/status",
            ready_status("LlmProvider", 1),
        ),
        expect(
            "PATCH",
            "/apis/llm.dgidgi.io/v1alpha1/namespaces/team-acme/llmtenants/acme/status",
            |body| {
                ready_status("LlmTenant", 1)(body);
                assert_eq!(body["status"]["tier"], "pro");
                assert_eq!(body["status"]["effectiveLimits"]["requestsPerMinute"], 60);
                assert_eq!(
                    body["status"]["accessKeySecrets"][0],
                    "acme-llm-access-default"
                );
            },
        ),
        expect(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/dgidgi-system/events",
            event_on("LlmProvider", "mock"),
        ),
        expect(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/team-acme/events",
            event_on("LlmTenant", "acme"),
        ),
    ]
}

#[tokio::test]
async fn first_reconcile_applies_with_one_field_manager_then_statuses_then_events() {
    let mut cluster = Cluster::default();
    cluster.apply_yaml(SMALL);
    // Traced: the render and the applies are spans, with what each did.
    let (receiver, spans) = common::otlp::receiver().await;
    let traces =
        dgidgi::telemetry::Traces::build(Some(&format!("http://{receiver}/v1/traces"))).unwrap();
    let outcome = run_writer_traced(&cluster, small_cluster_calls(), Some(&traces)).await;
    let flushing = traces.clone();
    tokio::task::spawn_blocking(move || flushing.flush())
        .await
        .unwrap();
    let spans = spans.lock().unwrap().clone();
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
            .clone()
    };
    let (render, apply) = (span("dgidgi.render"), span("dgidgi.apply"));
    assert_eq!(
        render.attributes["dgidgi.writes_planned"],
        apply.attributes["dgidgi.writes_done"]
    );
    assert_eq!(apply.attributes["dgidgi.writes_failed"], "0");
    assert!(!apply.error);
    assert_eq!(outcome.done, 8);
    assert!(outcome.failed.is_empty());
}

#[tokio::test]
async fn a_no_op_reconcile_calls_the_api_not_at_all() {
    let mut cluster = Cluster::default();
    cluster.apply_yaml(SMALL);
    cluster.pass();
    let outcome = run_writer(&cluster, Vec::new()).await;
    assert_eq!(outcome.done, 0);
}

#[tokio::test]
async fn a_refused_write_does_not_stop_the_others() {
    let mut cluster = Cluster::default();
    cluster.apply_yaml(SMALL);
    let mut calls = small_cluster_calls();
    // The provider was deleted between the watch event and the status patch.
    calls[4].fail_with = Some(404);
    let outcome = run_writer(&cluster, calls).await;
    assert_eq!(outcome.done, 7);
    assert_eq!(outcome.failed.len(), 1);
    let failure = outcome.failed[0].to_string();
    assert!(
        failure.contains("LlmProvider dgidgi-system/mock"),
        "{failure}"
    );
    assert!(failure.contains("404"), "{failure}");
}

/// Issue #26 through kube's mock API service: a changed platform configuration rewrites the
/// gateway config and the affected tenant's status, nothing else; an invalid one is a Warning
/// Event on its ConfigMap naming the problem.
#[tokio::test]
async fn a_platform_configuration_change_calls_the_api_for_the_affected_tenant_only() {
    use api::expect;
    let mut cluster = Cluster::default();
    cluster.apply_yaml(SMALL);
    cluster.pass();
    cluster.apply_yaml(PLATFORM_CONFIG);
    let calls = vec![
        expect(
            "PATCH",
            "/api/v1/namespaces/dgidgi-system/configmaps/dgidgi-gateway-config",
            |body| {
                let tiers = &body["metadata"]["annotations"]["llm.dgidgi.io/tiers-in-force"];
                assert!(tiers.as_str().unwrap().contains("900000"), "{tiers}");
            },
        ),
        expect(
            "PATCH",
            "/apis/llm.dgidgi.io/v1alpha1/namespaces/team-acme/llmtenants/acme/status",
            |body| {
                let limits = &body["status"]["effectiveLimits"];
                assert_eq!(limits["requestsPerMinute"], 100, "{limits}");
                assert_eq!(limits["tokensPerDay"], 900_000, "{limits}");
            },
        ),
    ];
    let outcome = run_writer(&cluster, calls).await;
    assert_eq!((outcome.done, outcome.failed.len()), (2, 0));

    let (client, handle) = mock_client();
    let verifier = tokio::spawn(api::verify(
        handle,
        vec![expect(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/dgidgi-system/events",
            |body| {
                assert_eq!(body["regarding"]["kind"], "ConfigMap");
                assert_eq!(body["regarding"]["name"], "dgidgi-platform");
                assert_eq!(body["type"], "Warning");
                assert_eq!(body["reason"], "InvalidPlatformConfig");
                assert!(body["note"].as_str().unwrap().contains("requestsPerMinute"));
            },
        )],
    ));
    let writer = dgidgi::operator::writer::Writer::new(client, Some("test-pod".into()));
    cluster.apply_yaml(&PLATFORM_CONFIG.replace("requestsPerMinute: 100", "requestsPerMinute: 0"));
    let problem =
        dgidgi::render::platform::tiers(cluster.observed.platform_config(PLATFORM)).unwrap_err();
    let config_map = cluster
        .observed
        .platform_config_map(PLATFORM)
        .unwrap()
        .clone();
    writer
        .warn_platform_config(&config_map, &problem.to_string())
        .await
        .unwrap();
    drop(writer);
    verifier.await.expect("one Warning Event");
}

// ---- Usage into status. ----

mod usage {
    use super::*;
    use dgidgi::metering::meter::UsageSummary;
    use dgidgi::operator::usage::{Totals, combine, plan_usage};

    fn summary(shared: bool, month: &str, tenants: &[(&str, u64, u64)]) -> UsageSummary {
        serde_json::from_value(json!({
            "day": format!("{month}-25"), "month": month, "shared": shared,
            "tenants": tenants.iter().map(|(t, tokens, spend)| json!({
                "tenant": t, "requestsToday": 1, "tokensToday": tokens,
                "spendThisMonthMicroUsd": spend, "thresholdsCrossed": [], "budgetExceeded": false,
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn totals_of(totals: &Totals, tenant: &str) -> (u64, u64) {
        let t = &totals.tenants[tenant];
        (t.tokens_today, t.spend_micro_usd)
    }

    #[test]
    fn per_pod_counters_are_summed_shared_ones_taken_once() {
        let a = summary(
            false,
            "2026-11",
            &[("team-acme/acme", 10, 100), ("x/y", 1, 1)],
        );
        let b = summary(false, "2026-11", &[("team-acme/acme", 5, 50)]);
        let totals = combine(&[Some(a.clone()), Some(b.clone())]).unwrap();
        assert_eq!(totals.month, "2026-11");
        assert_eq!(totals_of(&totals, "team-acme/acme"), (15, 150));
        assert_eq!(totals_of(&totals, "x/y"), (1, 1));
        // A pod that did not answer would lower a sum: no figures this round.
        assert_eq!(combine(&[Some(a), None]), None);
        // Shared counters: every pod reports the same totals; one is taken, a silent pod is fine.
        let s1 = summary(true, "2026-11", &[("team-acme/acme", 7, 70)]);
        let totals = combine(&[Some(s1.clone()), Some(s1), None]).unwrap();
        assert_eq!(totals_of(&totals, "team-acme/acme"), (7, 70));
        // A pod still in the old month is left out.
        let old = summary(false, "2026-10", &[("team-acme/acme", 99, 9_999)]);
        let new = summary(false, "2026-11", &[("team-acme/acme", 1, 2)]);
        let totals = combine(&[Some(old), Some(new)]).unwrap();
        assert_eq!(totals_of(&totals, "team-acme/acme"), (1, 2));
        assert_eq!(combine(&[]), None);
    }

    fn events(writes: &[Write]) -> Vec<(String, String)> {
        writes
            .iter()
            .filter_map(|w| match w {
                Write::Event(e) => Some((e.key.to_string(), format!("{}: {}", e.reason, e.note))),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn usage_goes_into_status_with_budget_condition_and_one_event_per_threshold() {
        let mut cluster = quickstart();
        let now = common::now();
        // initech: 0.05 USD budget, alerts at 80 and 100; it has spent 0.045 (90%).
        let answer = summary(false, "2026-11", &[("team-initech/initech", 1200, 45_000)]);
        let totals = combine(&[Some(answer)]).unwrap();
        let writes = plan_usage(&totals, &cluster.observed, now);
        assert!(kinds(&writes).contains(&"Status(LlmTenant team-initech/initech)".to_owned()));
        assert_eq!(
            events(&writes),
            vec![(
                "team-initech/initech".to_owned(),
                "BudgetThresholdCrossed: 80% of the monthly budget of 0.05 USD reached".to_owned()
            )]
        );
        cluster.apply(&writes);
        let status = cluster.status(ResourceKind::LlmTenant, "team-initech", "initech");
        assert_eq!(status["usage"]["tokensToday"], 1200);
        assert_eq!(status["usage"]["spendThisMonthUsd"], 0.045);
        assert_eq!(status["usage"]["updatedAt"], "2026-11-25T12:00:00Z");
        let budget = cluster.condition(
            ResourceKind::LlmTenant,
            "team-initech",
            "initech",
            "BudgetExceeded",
        );
        assert_eq!(
            (budget["status"].as_str(), budget["reason"].as_str()),
            (Some("False"), Some("WithinBudget"))
        );

        // The same figures again: nothing to write, no Event repeated.
        assert!(plan_usage(&totals, &cluster.observed, now).is_empty());
        // A render pass keeps usage and the budget condition.
        assert!(cluster.pass().writes.is_empty());

        // Over budget: the condition turns True, with one Event for it and one for 100%.
        let answer = summary(false, "2026-11", &[("team-initech/initech", 1500, 60_000)]);
        let writes = plan_usage(&combine(&[Some(answer)]).unwrap(), &cluster.observed, now);
        let reasons: Vec<_> = events(&writes).into_iter().map(|(_, r)| r).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].starts_with("BudgetExceeded: "));
        assert!(reasons[1].starts_with("BudgetThresholdCrossed: 100%"));
        cluster.apply(&writes);
        let budget = cluster.condition(
            ResourceKind::LlmTenant,
            "team-initech",
            "initech",
            "BudgetExceeded",
        );
        assert_eq!(budget["status"], "True");
        assert!(
            budget["message"]
                .as_str()
                .unwrap()
                .contains("action: alert")
        );
        // Tenants without traffic get zero usage once, then nothing.
        let acme = cluster.status(ResourceKind::LlmTenant, "team-acme", "acme");
        assert_eq!(acme["usage"]["tokensToday"], 0);
        let budget = cluster.condition(
            ResourceKind::LlmTenant,
            "team-acme",
            "acme",
            "BudgetExceeded",
        );
        assert_eq!(budget["status"], "False");
    }

    /// A gateway admin listener answering the contract JSON, only with the right token.
    async fn fake_gateway(body: String) -> std::net::SocketAddr {
        use http_body_util::Full;
        use hyper::body::Incoming;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let body = body.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                            let authorized = request.uri().path() == "/usage"
                                && request
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    == Some("Bearer admin-secret");
                            let response = if authorized {
                                hyper::Response::new(Full::new(bytes::Bytes::from(body.clone())))
                            } else {
                                let mut r = hyper::Response::new(Full::new(bytes::Bytes::new()));
                                *r.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                                r
                            };
                            async move { Ok::<_, std::convert::Infallible>(response) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn the_poller_reads_a_gateway_with_its_bearer_token() {
        use dgidgi::operator::usage::fetch;
        use std::time::Duration;
        let body = json!({"day":"2026-11-25","month":"2026-11","shared":false,"tenants":[
            {"tenant":"team-acme/acme","requestsToday":1,"tokensToday":123,
             "spendThisMonthMicroUsd":456,"budgetMicroUsd":5000000,
             "thresholdsCrossed":[50,80],"budgetExceeded":false}]})
        .to_string();
        let address = fake_gateway(body).await;
        let url = format!("http://{address}/usage");
        let summary = fetch(&url, "admin-secret", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(summary.month, "2026-11");
        assert_eq!(summary.tenants[0].tokens_today, 123);
        assert_eq!(summary.tenants[0].spend_this_month_micro_usd, 456);
        assert_eq!(fetch(&url, "wrong", Duration::from_secs(10)).await, None);
        let totals = combine(&[Some(summary)]).unwrap();
        assert_eq!(totals_of(&totals, "team-acme/acme"), (123, 456));
    }

    #[test]
    fn admin_urls_come_from_ready_endpoints_on_the_admin_port() {
        use dgidgi::operator::usage::admin_urls;
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        let slice: EndpointSlice = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "dgidgi-gateway-admin-abc", "namespace": "dgidgi-system"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}],
            "endpoints": [
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}}
            ]
        }))
        .unwrap();
        assert_eq!(
            admin_urls(&[slice]),
            vec!["http://10.0.0.1:9090/usage", "http://10.0.0.2:9090/usage"]
        );
    }
}
