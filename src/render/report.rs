//! The status output: what render (or the operator) would write into each resource's
//! `status`. Offline it is `status.yaml`; fed back, it keeps unchanged conditions' timestamps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{InvalidResource, ObjectKey, ResourceKind};
use crate::crd::common::{ConditionStatus, ConditionUpdate, merge_conditions};
use crate::crd::{LlmProviderStatus, LlmTenantStatus, RoutingPolicyStatus};

/// `kind` of the status output document.
pub const REPORT_KIND: &str = "RenderReport";

/// Condition type every resource carries.
pub const READY: &str = "Ready";

/// Status of every custom resource render saw.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RenderReport {
    /// Always `llm.dgidgi.io/v1alpha1`.
    pub api_version: String,
    /// Always `RenderReport`.
    pub kind: String,
    /// LlmProvider statuses.
    #[serde(default)]
    pub providers: Vec<ReportEntry<LlmProviderStatus>>,
    /// LlmTenant statuses.
    #[serde(default)]
    pub tenants: Vec<ReportEntry<LlmTenantStatus>>,
    /// RoutingPolicy statuses.
    #[serde(default)]
    pub policies: Vec<ReportEntry<RoutingPolicyStatus>>,
}

impl Default for RenderReport {
    fn default() -> Self {
        Self {
            api_version: crate::crd::API_VERSION.to_owned(),
            kind: REPORT_KIND.to_owned(),
            providers: Vec::new(),
            tenants: Vec::new(),
            policies: Vec::new(),
        }
    }
}

/// One resource's status.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportEntry<S> {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The status subresource as it would be written.
    pub status: S,
}

impl RenderReport {
    /// Previous conditions of a resource, for keeping transition times. The report must be
    /// sorted (render sorts the previous report it is given).
    pub fn conditions(&self, kind: ResourceKind, key: &ObjectKey) -> &[Condition] {
        fn find<'a, S>(
            entries: &'a [ReportEntry<S>],
            key: &ObjectKey,
            get: impl Fn(&'a S) -> &'a [Condition],
        ) -> &'a [Condition] {
            // By halves: a previous report is sorted ([`RenderReport::sort`]), and a scan per
            // resource made a 100,000-tenant render quadratic (minutes).
            entries
                .binary_search_by(|e| {
                    (e.namespace.as_str(), e.name.as_str())
                        .cmp(&(key.namespace.as_str(), key.name.as_str()))
                })
                .ok()
                .map(|index| get(&entries[index].status))
                .unwrap_or(&[])
        }
        match kind {
            ResourceKind::LlmProvider => find(&self.providers, key, |s| &s.conditions),
            ResourceKind::LlmTenant => find(&self.tenants, key, |s| &s.conditions),
            ResourceKind::RoutingPolicy => find(&self.policies, key, |s| &s.conditions),
        }
    }

    /// Records resources that failed validation: `Ready=False, reason InvalidSpec`.
    pub fn add_invalid(
        &mut self,
        invalid: &[InvalidResource],
        previous: &RenderReport,
        now: Timestamp,
    ) {
        for resource in invalid {
            let conditions = merge_conditions(
                previous.conditions(resource.kind, &resource.key),
                vec![ConditionUpdate::new(
                    READY,
                    ConditionStatus::False,
                    "InvalidSpec",
                    resource.message.clone(),
                )],
                resource.generation,
                now,
            );
            let (namespace, name) = (resource.key.namespace.clone(), resource.key.name.clone());
            match resource.kind {
                ResourceKind::LlmProvider => self.providers.push(ReportEntry {
                    namespace,
                    name,
                    status: LlmProviderStatus {
                        models: None,
                        conditions,
                    },
                }),
                ResourceKind::LlmTenant => self.tenants.push(ReportEntry {
                    namespace,
                    name,
                    status: LlmTenantStatus {
                        conditions,
                        ..Default::default()
                    },
                }),
                ResourceKind::RoutingPolicy => self.policies.push(ReportEntry {
                    namespace,
                    name,
                    status: RoutingPolicyStatus {
                        rules: None,
                        conditions,
                    },
                }),
            }
        }
    }

    /// Sorts every list by namespace/name.
    pub fn sort(&mut self) {
        self.providers
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.tenants
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    }

    /// Every resource whose Ready condition is False, as `Kind namespace/name: reason: message`.
    pub fn not_ready(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut collect = |kind: &str, namespace: &str, name: &str, conditions: &[Condition]| {
            for c in conditions
                .iter()
                .filter(|c| c.type_ == READY && c.status != "True")
            {
                lines.push(format!(
                    "{kind} {namespace}/{name}: {}: {}",
                    c.reason, c.message
                ));
            }
        };
        for e in &self.providers {
            collect("LlmProvider", &e.namespace, &e.name, &e.status.conditions);
        }
        for e in &self.tenants {
            collect("LlmTenant", &e.namespace, &e.name, &e.status.conditions);
        }
        for e in &self.policies {
            collect("RoutingPolicy", &e.namespace, &e.name, &e.status.conditions);
        }
        lines
    }

    /// Serializes the report as YAML.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}
