//! The three custom resources (`llm.dgidgi.io/v1alpha1`) and what they share.

pub mod common;
pub mod policy;
pub mod provider;
pub mod tenant;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use policy::{RoutingPolicy, RoutingPolicySpec, RoutingPolicyStatus};
pub use provider::{LlmProvider, LlmProviderSpec, LlmProviderStatus};
pub use tenant::{LlmTenant, LlmTenantSpec, LlmTenantStatus, Source};

/// API group of every dgidgi resource.
pub const GROUP: &str = "llm.dgidgi.io";
/// `apiVersion` of every dgidgi resource.
pub const API_VERSION: &str = "llm.dgidgi.io/v1alpha1";

/// The CRDs in a fixed order, so `dgidgi crds` and `crds/` stay byte-identical.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![LlmProvider::crd(), LlmTenant::crd(), RoutingPolicy::crd()]
}

/// File name under `crds/` for a CRD, following the `<group>_<plural>.yaml` convention.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// Renders one CRD as YAML.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// All CRDs as one multi-document YAML stream.
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}
