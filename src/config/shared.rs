//! The words the custom resources and the rendered config share: which source serves a tenant,
//! the limits in force, what a spent budget does, which failures a retry reacts to. Owned here,
//! by the config (the data plane's contract), and used by the CRDs (whose schemas and
//! `kubectl explain` text come from these types and their doc comments), so the config's
//! on-disk form does not follow a CRD version, and nothing past render imports `crd`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which kind of keys serve a tenant (DESIGN §2).
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The platform's shared keys: metered, tier limits, budgets.
    #[default]
    Platform,
    /// The tenant's own keys, stored encrypted; no platform limits.
    Tenant,
    /// A local or self-hosted Ollama-compatible endpoint.
    Cli,
}

impl Source {
    /// Whether tenants of this source may be served by platform providers: always for
    /// `platform`, for `tenant` only with `allowPlatformFallback`, never for `cli`.
    pub fn reaches_platform(self, allow_platform_fallback: bool) -> bool {
        match self {
            Self::Platform => true,
            Self::Tenant => allow_platform_fallback,
            Self::Cli => false,
        }
    }

    /// The spelling used in CRs, config and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Tenant => "tenant",
            Self::Cli => "cli",
        }
    }
}

/// Limits the gateway enforces for a platform-source tenant.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveLimits {
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Tokens per UTC day.
    pub tokens_per_day: u64,
    /// Requests in flight at once.
    pub concurrent: u64,
}

/// What the gateway does once a budget is spent.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetAction {
    /// Refuse further platform-served requests with 402 until the month ends.
    #[default]
    Block,
    /// Only record the overspend and raise alerts.
    Alert,
}

/// Failure classes a retry may react to.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The upstream answered 429.
    RateLimited,
    /// The upstream answered 5xx.
    ServerError,
    /// No first byte in time.
    Timeout,
    /// The connection was refused or reset.
    ConnectError,
}

impl RetryOn {
    /// Every failure class, the default.
    pub fn all() -> Vec<Self> {
        vec![
            Self::RateLimited,
            Self::ServerError,
            Self::Timeout,
            Self::ConnectError,
        ]
    }
}

/// A cloud identity the gateway's own pod holds, used instead of a stored credential: the
/// organisation's workload identity, for platforms that forbid static cloud keys. Platform
/// providers only (a tenant never spends the platform's identity).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadIdentity {
    /// AWS IAM Roles for Service Accounts (IRSA): the projected web identity token
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE`) exchanged at STS for the role `AWS_ROLE_ARN`'s temporary
    /// credentials (type bedrock).
    AwsWebIdentity,
    /// EKS Pod Identity: temporary credentials from the EKS agent
    /// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) (type
    /// bedrock).
    EksPodIdentity,
    /// GKE Workload Identity: access tokens of the pod's Google service account from the
    /// metadata server (type vertex-ai).
    GkeMetadata,
    /// Azure Workload Identity: the projected federated token (`AZURE_FEDERATED_TOKEN_FILE`)
    /// exchanged at Entra for the app `AZURE_CLIENT_ID`'s tokens in `AZURE_TENANT_ID` (type
    /// azure-openai).
    AzureWorkloadIdentity,
}

impl WorkloadIdentity {
    /// The spelling used in CRs and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwsWebIdentity => "aws-web-identity",
            Self::EksPodIdentity => "eks-pod-identity",
            Self::GkeMetadata => "gke-metadata",
            Self::AzureWorkloadIdentity => "azure-workload-identity",
        }
    }
}
