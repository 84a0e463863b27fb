//! Short-lived credentials for the providers that take no static key: bearer tokens exchanged
//! for a stored credential (Vertex AI's service accounts, Azure OpenAI's Entra applications),
//! and the gateway pod's own workload identity (IRSA, EKS Pod Identity, GKE's metadata server,
//! Azure Workload Identity). Fetched on first use, cached per provider, fetched again before
//! they expire. One fetch at a time per provider (the others wait for it), so a burst of
//! requests costs the token endpoint one call. A rotated credential (another fingerprint)
//! starts afresh. They live in memory only, zeroized when dropped, and are never logged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::config::{ProviderConfig, WorkloadIdentity};
use crate::crypto::Credential;
use crate::providers::ProviderKind;
use crate::providers::grants::{self, GrantError, ServiceAccount};

/// A credential is fetched again when less than this is left of its life (or half of it, for
/// a short-lived one).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// How long a token endpoint may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest life a fetched credential is trusted with.
const MAX_LIFE: Duration = Duration::from_secs(24 * 3600);
/// How long a failed fetch is remembered before the next request tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// The largest answer read from one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The session name the gateway's role sessions carry (AWS CloudTrail shows it).
const AWS_SESSION_NAME: &str = "dgidgi-gateway";
/// GKE's metadata server when `GCE_METADATA_HOST` names none.
const GCE_METADATA_HOST: &str = "metadata.google.internal";

/// Why no credential could be had. Never carries a secret.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TokenError {
    /// The credential cannot make a grant, or the answer was not one.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The token endpoint could not be reached or timed out.
    #[error("the token endpoint could not be reached")]
    Unreachable,
    /// The token endpoint refused (its status).
    #[error("the token endpoint refused the credential ({0})")]
    Refused(u16),
    /// The pod's environment does not describe the identity (a variable or file is missing).
    #[error("the gateway's {identity} identity is not set up: {missing}")]
    NoIdentity {
        /// Which identity.
        identity: &'static str,
        /// The variable or file that is missing.
        missing: String,
    },
}

/// Where the pod's workload identities are, as the clouds' SDKs read them from the environment
/// (the projected token files are re-read on every fetch: the kubelet rotates them).
#[derive(Clone, Debug, Default)]
pub struct CloudEnvironment {
    /// Microsoft Entra's authority (`AZURE_AUTHORITY_HOST`; default the public cloud's).
    pub azure_authority_host: Option<String>,
    /// `AZURE_CLIENT_ID`: the Entra application of Azure Workload Identity (its webhook sets
    /// it, as the two below).
    pub azure_client_id: Option<String>,
    /// `AZURE_TENANT_ID`: its Entra tenant.
    pub azure_tenant_id: Option<String>,
    /// `AZURE_FEDERATED_TOKEN_FILE`: the projected service account token Entra trusts.
    pub azure_federated_token_file: Option<PathBuf>,
    /// `AWS_ROLE_ARN`: the role IRSA assumes (its webhook sets it, as the token file).
    pub aws_role_arn: Option<String>,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`: the projected service account token STS trusts.
    pub aws_web_identity_token_file: Option<PathBuf>,
    /// STS's endpoint (`AWS_ENDPOINT_URL_STS`; default the provider region's).
    pub aws_sts_endpoint: Option<String>,
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`: EKS Pod Identity's agent.
    pub aws_container_credentials_full_uri: Option<String>,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`: the token the agent takes.
    pub aws_container_authorization_token_file: Option<PathBuf>,
    /// The metadata server (`GCE_METADATA_HOST`; default `metadata.google.internal`).
    pub gce_metadata_host: Option<String>,
}

impl CloudEnvironment {
    /// Read from the process environment under the names the clouds' SDKs use.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let path = |name: &str| var(name).map(PathBuf::from);
        Self {
            azure_authority_host: var("AZURE_AUTHORITY_HOST"),
            azure_client_id: var("AZURE_CLIENT_ID"),
            azure_tenant_id: var("AZURE_TENANT_ID"),
            azure_federated_token_file: path("AZURE_FEDERATED_TOKEN_FILE"),
            aws_role_arn: var("AWS_ROLE_ARN"),
            aws_web_identity_token_file: path("AWS_WEB_IDENTITY_TOKEN_FILE"),
            aws_sts_endpoint: var("AWS_ENDPOINT_URL_STS"),
            aws_container_credentials_full_uri: var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            aws_container_authorization_token_file: path("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            gce_metadata_host: var("GCE_METADATA_HOST"),
        }
    }
}

/// What a request is signed with instead of its stored credential.
#[derive(Clone)]
pub enum Fetched {
    /// A bearer token.
    Bearer(Credential),
    /// Temporary AWS credentials (signed with SigV4 like an access key).
    Aws(Credential),
}

impl Fetched {
    /// The credential the signer writes.
    pub fn credential(&self) -> &Credential {
        match self {
            Self::Bearer(credential) | Self::Aws(credential) => credential,
        }
    }
}

/// Where a provider's short-lived credential comes from.
enum Source<'a> {
    /// A grant made with its stored credential.
    Grant(&'a Credential),
    /// The pod's own identity.
    Identity(WorkloadIdentity),
}

/// The cache of every provider's fetched credential.
pub struct Tokens {
    environment: CloudEnvironment,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// One provider's credential.
struct Slot {
    fingerprint: [u8; 32],
    fetched: tokio::sync::Mutex<Cached>,
}

/// What a slot knows.
#[derive(Default)]
struct Cached {
    /// The credential, when it will be fetched again, and when it expires.
    fetched: Option<(Fetched, Instant, Instant)>,
    /// The last fetch failed: requests until then fail at once rather than each waiting for a
    /// token endpoint that is down.
    failed: Option<(Instant, TokenError)>,
}

impl Tokens {
    /// An empty cache for a pod in `environment`.
    pub fn new(environment: CloudEnvironment) -> Self {
        Self {
            environment,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// What a request to `provider` is signed with when it is not `stored` itself (`None`: the
    /// stored credential, as it is): cached, or fetched through `client` (the provider's own:
    /// a tenant's token endpoint is reached only through its egress allow-list, as its API is).
    pub async fn fetch<C>(
        &self,
        client: &Client<C, Full<Bytes>>,
        provider: &ProviderConfig,
        stored: Option<&Credential>,
    ) -> Result<Option<Fetched>, TokenError>
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let source = match (provider.identity, stored) {
            (Some(identity), _) => Source::Identity(identity),
            (None, Some(credential)) if exchanges(provider.kind, credential) => {
                Source::Grant(credential)
            }
            _ => return Ok(None),
        };
        let slot = self.slot(&provider.id, &source);
        let mut cached = slot.fetched.lock().await;
        let now = Instant::now();
        match &cached.fetched {
            Some((fetched, refresh_at, _)) if now < *refresh_at => {
                return Ok(Some(fetched.clone()));
            }
            _ => {}
        }
        if let Some((until, error)) = &cached.failed
            && now < *until
        {
            return Err(error.clone());
        }
        let result = match source {
            Source::Grant(credential) => match self.grant(provider.kind, credential) {
                Ok((url, body)) => bearer(client, Call::form(&url, body)).await,
                Err(error) => Err(error.into()),
            },
            Source::Identity(identity) => self.identity(client, provider, identity).await,
        };
        match result {
            Ok((fetched, life)) => {
                // A life the endpoint claims beyond a day is not believed (nor is an overflow).
                let life = life.min(MAX_LIFE);
                let margin = REFRESH_MARGIN.min(life / 2);
                cached.fetched = Some((fetched.clone(), now + (life - margin), now + life));
                cached.failed = None;
                tracing::debug!(provider = ?provider.id, life_secs = life.as_secs(), "fetched a provider credential");
                Ok(Some(fetched))
            }
            Err(error) => {
                cached.failed = Some((Instant::now() + RETRY_AFTER_FAILURE, error.clone()));
                // A refresh that fails while the credential is still valid keeps it in use.
                match &cached.fetched {
                    Some((fetched, _, expires_at)) if Instant::now() < *expires_at => {
                        tracing::warn!(provider = ?provider.id, "refreshing the provider's credential failed; the current one is used until it expires: {error}");
                        Ok(Some(fetched.clone()))
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// Forgets a provider's fetched credential (the provider refused it: revoked, or the
    /// identity's permissions changed), so the next request fetches a new one.
    pub fn evict(&self, provider: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.remove(provider);
    }

    /// The provider's slot, new when its credential changed.
    fn slot(&self, provider: &str, source: &Source<'_>) -> Arc<Slot> {
        let fingerprint: [u8; 32] = match source {
            Source::Grant(credential) => Sha256::digest(credential.encode().1.as_slice()).into(),
            Source::Identity(identity) => Sha256::digest(identity.as_str()).into(),
        };
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = || {
            Arc::new(Slot {
                fingerprint,
                fetched: tokio::sync::Mutex::new(Cached::default()),
            })
        };
        let slot = slots.entry(provider.to_owned()).or_insert_with(fresh);
        if slot.fingerprint != fingerprint {
            *slot = fresh();
        }
        slot.clone()
    }

    /// Forgets the providers a new config no longer has.
    pub fn retain(&self, providers: &std::collections::HashSet<&str>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|id, _| providers.contains(id.as_str()));
    }

    /// The token request a provider's stored credential makes.
    fn grant(
        &self,
        kind: ProviderKind,
        credential: &Credential,
    ) -> Result<(String, Zeroizing<String>), GrantError> {
        if kind == ProviderKind::VertexAi {
            let key = credential
                .api_key()
                .ok_or(GrantError::MissingPart(crate::crypto::credential::API_KEY))?;
            let account = ServiceAccount::from_json(key)?;
            let (url, body) = account.grant(grants::GOOGLE_CLOUD_SCOPE, unix_now())?;
            return Ok((url, Zeroizing::new(body)));
        }
        use crate::crypto::credential::{CLIENT_ID, CLIENT_SECRET, TENANT_ID};
        let part = |name: &'static str| -> Result<&str, GrantError> {
            credential
                .part(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .ok_or(GrantError::MissingPart(name))
        };
        Ok(grants::entra_grant(
            self.azure_authority(),
            part(TENANT_ID)?,
            part(CLIENT_ID)?,
            part(CLIENT_SECRET)?,
        ))
    }

    fn azure_authority(&self) -> &str {
        self.environment
            .azure_authority_host
            .as_deref()
            .unwrap_or(grants::AZURE_AUTHORITY)
    }

    /// A credential of the pod's own identity, and how long it lives.
    async fn identity<C>(
        &self,
        client: &Client<C, Full<Bytes>>,
        provider: &ProviderConfig,
        identity: WorkloadIdentity,
    ) -> Result<(Fetched, Duration), TokenError>
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let env = &self.environment;
        let name = identity.as_str();
        let missing = |what: &str| TokenError::NoIdentity {
            identity: name,
            missing: what.to_owned(),
        };
        match identity {
            WorkloadIdentity::AwsWebIdentity => {
                let role = env
                    .aws_role_arn
                    .as_deref()
                    .ok_or_else(|| missing("AWS_ROLE_ARN"))?;
                let file = env
                    .aws_web_identity_token_file
                    .as_deref()
                    .ok_or_else(|| missing("AWS_WEB_IDENTITY_TOKEN_FILE"))?;
                let token = read_token_file(file, name).await?;
                let url = match &env.aws_sts_endpoint {
                    Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
                    None => {
                        let region = provider
                            .cloud
                            .region
                            .as_deref()
                            .ok_or_else(|| missing("a region"))?;
                        format!("https://sts.{region}.amazonaws.com/")
                    }
                };
                let body = grants::sts_web_identity_grant(role, AWS_SESSION_NAME, &token);
                let answer = call(client, Call::form(&url, body)).await?;
                aws(grants::read_sts_credentials(&answer)?)
            }
            WorkloadIdentity::EksPodIdentity => {
                let url = env
                    .aws_container_credentials_full_uri
                    .as_deref()
                    .ok_or_else(|| missing("AWS_CONTAINER_CREDENTIALS_FULL_URI"))?;
                let file = env
                    .aws_container_authorization_token_file
                    .as_deref()
                    .ok_or_else(|| missing("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"))?;
                let token = read_token_file(file, name).await?;
                let answer = call(client, Call::get(url, Some(token))).await?;
                aws(grants::read_container_credentials(&answer)?)
            }
            WorkloadIdentity::GkeMetadata => {
                let host = env
                    .gce_metadata_host
                    .as_deref()
                    .unwrap_or(GCE_METADATA_HOST);
                let url = format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                );
                let mut get = Call::get(&url, None);
                get.metadata_flavor = true;
                bearer(client, get).await
            }
            WorkloadIdentity::AzureWorkloadIdentity => {
                let client_id = env
                    .azure_client_id
                    .as_deref()
                    .ok_or_else(|| missing("AZURE_CLIENT_ID"))?;
                let tenant = env
                    .azure_tenant_id
                    .as_deref()
                    .ok_or_else(|| missing("AZURE_TENANT_ID"))?;
                let file = env
                    .azure_federated_token_file
                    .as_deref()
                    .ok_or_else(|| missing("AZURE_FEDERATED_TOKEN_FILE"))?;
                let token = read_token_file(file, name).await?;
                let (url, body) = grants::entra_federated_grant(
                    self.azure_authority(),
                    tenant,
                    client_id,
                    &token,
                );
                bearer(client, Call::form(&url, body)).await
            }
        }
    }
}

/// Whether requests to `provider` (with its stored `credential`) are signed with a fetched
/// credential: the pod's identity, or a token exchanged for the stored one.
pub fn fetches(provider: &ProviderConfig, credential: Option<&Credential>) -> bool {
    provider.identity.is_some() || credential.is_some_and(|c| exchanges(provider.kind, c))
}

/// Whether requests to `kind` with a stored `credential` carry an exchanged token rather than
/// the credential itself.
pub fn exchanges(kind: ProviderKind, credential: &Credential) -> bool {
    match kind {
        ProviderKind::VertexAi => true,
        ProviderKind::AzureOpenai => matches!(credential, Credential::Parts(_)),
        _ => false,
    }
}

/// Temporary AWS credentials and their life.
fn aws(credentials: grants::AwsCredentials) -> Result<(Fetched, Duration), TokenError> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let life = credentials
        .expiration
        .duration_since(now)
        .try_into()
        .unwrap_or(Duration::ZERO);
    Ok((Fetched::Aws(credentials.credential), life))
}

/// Reads a projected token file (the kubelet rewrites it as it rotates).
async fn read_token_file(
    file: &std::path::Path,
    identity: &'static str,
) -> Result<Zeroizing<String>, TokenError> {
    let token = tokio::fs::read_to_string(file)
        .await
        .map_err(|_| TokenError::NoIdentity {
            identity,
            missing: format!("a readable token file at {}", file.display()),
        })?;
    Ok(Zeroizing::new(token.trim().to_owned()))
}

/// One request to a token endpoint.
struct Call<'a> {
    url: &'a str,
    /// A form to post (`None`: a GET).
    form: Option<Zeroizing<String>>,
    /// The `Authorization` value (EKS Pod Identity's agent).
    authorization: Option<Zeroizing<String>>,
    /// `Metadata-Flavor: Google` (the metadata server's guard against forwarded requests).
    metadata_flavor: bool,
}

impl<'a> Call<'a> {
    fn form(url: &'a str, body: Zeroizing<String>) -> Self {
        Self {
            url,
            form: Some(body),
            authorization: None,
            metadata_flavor: false,
        }
    }

    fn get(url: &'a str, authorization: Option<Zeroizing<String>>) -> Self {
        Self {
            url,
            form: None,
            authorization,
            metadata_flavor: false,
        }
    }
}

/// A bearer token from a token endpoint's OAuth answer, and its life.
async fn bearer<C>(
    client: &Client<C, Full<Bytes>>,
    request: Call<'_>,
) -> Result<(Fetched, Duration), TokenError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let answer = call(client, request).await?;
    let token = grants::read_token(&answer)?;
    let credential = Credential::key(token.access_token.as_bytes().to_vec());
    Ok((
        Fetched::Bearer(credential),
        Duration::from_secs(token.expires_in),
    ))
}

/// Makes one call to a token endpoint and reads its answer (bounded in size and time).
async fn call<C>(
    client: &Client<C, Full<Bytes>>,
    call: Call<'_>,
) -> Result<Zeroizing<Vec<u8>>, TokenError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let method = if call.form.is_some() {
        hyper::Method::POST
    } else {
        hyper::Method::GET
    };
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(call.url)
        .header(ACCEPT, "application/json");
    if call.form.is_some() {
        request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    if call.metadata_flavor {
        request = request.header("metadata-flavor", "Google");
    }
    if let Some(authorization) = &call.authorization {
        let mut value =
            HeaderValue::from_str(authorization).map_err(|_| TokenError::Unreachable)?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    let body = call
        .form
        .map(|form| Bytes::from(form.as_bytes().to_vec()))
        .unwrap_or_default();
    let request = request
        .body(Full::new(body))
        .map_err(|_| TokenError::Unreachable)?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|_| TokenError::Unreachable)?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|_| TokenError::Unreachable)?
            .to_bytes();
        let bytes = Zeroizing::new(bytes.to_vec());
        if !status.is_success() {
            // The endpoint's error code (no secret in it) is worth a log line.
            if let Err(error) = grants::read_token(&bytes) {
                tracing::warn!(status = status.as_u16(), "token endpoint refused: {error}");
            }
            return Err(TokenError::Refused(status.as_u16()));
        }
        Ok(bytes)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| TokenError::Unreachable)?
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
