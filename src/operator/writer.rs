//! Writing: performs the [`Write`]s a plan lists, one by one, so one refused write (say a
//! status patch on a resource deleted a moment ago) never stops the others.

use std::time::Instant;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::observed::WriteOverlay;
use super::plan::{EventWrite, Write};
use super::{FIELD_MANAGER, REPORTER};
use crate::crd::{API_VERSION, LlmProvider, LlmTenant, RoutingPolicy};
use crate::render::{ObjectKey, ResourceKind};

/// A write the API server refused.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct WriteError {
    /// Which write, e.g. `apply Secret ns/name`.
    pub what: String,
    /// The API's code and reason, never the body we sent.
    pub reason: String,
}

/// What a batch of writes did.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    /// Writes the API server accepted.
    pub done: usize,
    /// Writes it refused.
    pub failed: Vec<WriteError>,
    /// The namespaces of the refused writes.
    pub failed_namespaces: std::collections::BTreeSet<String>,
}

/// Performs writes with one client, one field manager and one Event recorder.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    recorder: Recorder,
}

/// The API resource of a custom resource kind.
pub fn api_resource(kind: ResourceKind) -> ApiResource {
    match kind {
        ResourceKind::LlmProvider => ApiResource::erase::<LlmProvider>(&()),
        ResourceKind::LlmTenant => ApiResource::erase::<LlmTenant>(&()),
        ResourceKind::RoutingPolicy => ApiResource::erase::<RoutingPolicy>(&()),
    }
}

/// Only the status code and reason of a failure: a Secret write's error could otherwise echo
/// part of what we sent.
fn reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} {}", status.code, status.reason),
        other => crate::redact::serde_message(&other.to_string()),
    }
}

impl Writer {
    /// A writer; `instance` names this replica on Events (the pod name).
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: REPORTER.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
        }
    }

    /// Performs `writes` in order, remembering written Secrets in `overlay`.
    pub async fn write_all(
        &self,
        writes: &[Write],
        overlay: &mut WriteOverlay,
        now: Instant,
    ) -> WriteOutcome {
        let mut outcome = WriteOutcome::default();
        for write in writes {
            match self.write(write).await {
                Ok(()) => {
                    outcome.done += 1;
                    match write {
                        Write::ApplySecret(secret) => overlay.applied(secret.clone(), now),
                        Write::DeleteSecret(key) => overlay.deleted(key.clone(), now),
                        _ => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "write refused");
                    outcome.failed.push(error);
                    outcome
                        .failed_namespaces
                        .insert(write.namespace().to_owned());
                }
            }
        }
        outcome
    }

    async fn write(&self, write: &Write) -> Result<(), WriteError> {
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let what = || format!("{write:?}");
        let fail = |e: kube::Error| WriteError {
            what: what(),
            reason: reason(&e),
        };
        match write {
            Write::ApplyConfigMap(cm) => {
                let api: Api<ConfigMap> =
                    Api::namespaced(self.client.clone(), &cm.namespace().unwrap_or_default());
                api.patch(&cm.name_any(), &apply, &Patch::Apply(cm))
                    .await
                    .map_err(fail)?;
            }
            Write::ApplySecret(secret) => {
                let api: Api<Secret> =
                    Api::namespaced(self.client.clone(), &secret.namespace().unwrap_or_default());
                api.patch(&secret.name_any(), &apply, &Patch::Apply(secret))
                    .await
                    .map_err(fail)?;
            }
            Write::DeleteSecret(key) => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
                match api.delete(&key.name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(e) => return Err(fail(e)),
                }
            }
            Write::Status { kind, key, status } => {
                let ar = api_resource(*kind);
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &key.namespace, &ar);
                let body = json!({
                    "apiVersion": API_VERSION,
                    "kind": kind.as_str(),
                    "status": status,
                });
                api.patch_status(&key.name, &apply, &Patch::Apply(&body))
                    .await
                    .map_err(fail)?;
            }
            Write::Event(event) => {
                self.recorder
                    .publish(&to_event(event), &reference(event.kind, &event.key, event))
                    .await
                    .map_err(fail)?;
            }
        }
        Ok(())
    }
}

impl Writer {
    /// A Warning Event on the platform configuration's ConfigMap: why it was refused (its
    /// messages name fields and tiers; the configuration holds nothing secret).
    pub async fn warn_platform_config(
        &self,
        config_map: &k8s_openapi::api::core::v1::ConfigMap,
        note: &str,
    ) -> Result<(), WriteError> {
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidPlatformConfig".to_owned(),
            note: Some(note.chars().take(1024).collect()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        let regarding = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("ConfigMap".to_owned()),
            name: config_map.metadata.name.clone(),
            namespace: config_map.metadata.namespace.clone(),
            uid: config_map.metadata.uid.clone(),
            ..ObjectReference::default()
        };
        self.recorder
            .publish(&event, &regarding)
            .await
            .map_err(|error| WriteError {
                what: "Event on ConfigMap dgidgi-platform".to_owned(),
                reason: error.to_string(),
            })
    }
}

fn to_event(event: &EventWrite) -> Event {
    Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.clone(),
        note: Some(event.note.clone()),
        action: "Reconcile".to_owned(),
        secondary: None,
    }
}

fn reference(kind: ResourceKind, key: &ObjectKey, event: &EventWrite) -> ObjectReference {
    ObjectReference {
        api_version: Some(API_VERSION.to_owned()),
        kind: Some(kind.as_str().to_owned()),
        name: Some(key.name.clone()),
        namespace: Some(key.namespace.clone()),
        uid: event.uid.clone(),
        ..ObjectReference::default()
    }
}
