//! Short-lived bearer tokens for the providers that take no static key (Vertex AI's service
//! accounts, Azure OpenAI's Entra applications): exchanged on first use, cached per provider,
//! and exchanged again before they expire. One exchange at a time per provider (the others
//! wait for it), so a burst of requests costs the token endpoint one call. A rotated
//! credential (another fingerprint) starts afresh. Tokens live in memory only, zeroized when
//! dropped, and are never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::config::ProviderConfig;
use crate::crypto::Credential;
use crate::providers::ProviderKind;
use crate::providers::oauth::{self, GrantError, ServiceAccount};

/// A token is exchanged again when less than this is left of its life (or half of it, for a
/// short-lived one).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// How long a token endpoint may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest token answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why no token could be had. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The credential cannot make a grant.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The token endpoint could not be reached or timed out.
    #[error("the token endpoint could not be reached")]
    Unreachable,
    /// The token endpoint refused (its status).
    #[error("the token endpoint refused the credential ({0})")]
    Refused(u16),
}

/// Whether requests to `kind` with `credential` carry an exchanged token rather than the
/// credential itself.
pub fn exchanges(kind: ProviderKind, credential: &Credential) -> bool {
    match kind {
        ProviderKind::VertexAi => true,
        ProviderKind::AzureOpenai => matches!(credential, Credential::Parts(_)),
        _ => false,
    }
}

/// The cache of every provider's token.
pub struct Tokens {
    /// Microsoft Entra's authority (`AZURE_AUTHORITY_HOST`, as Azure's own SDKs read it).
    azure_authority: String,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// One provider's token.
struct Slot {
    fingerprint: [u8; 32],
    token: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    token: Zeroizing<String>,
    refresh_at: Instant,
}

impl Tokens {
    /// An empty cache; Entra tokens are asked of `azure_authority`.
    pub fn new(azure_authority: Option<String>) -> Self {
        Self {
            azure_authority: azure_authority.unwrap_or_else(|| oauth::AZURE_AUTHORITY.into()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The bearer token for `provider`, as a credential the signer writes: cached, or
    /// exchanged through `client` (the provider's own: a tenant's token endpoint is reached
    /// only through its egress allow-list, as its API is).
    pub async fn bearer<C>(
        &self,
        client: &Client<C, Full<Bytes>>,
        provider: &ProviderConfig,
        credential: &Credential,
    ) -> Result<Credential, TokenError>
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let slot = self.slot(&provider.id, credential);
        let mut cached = slot.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(Credential::key(token.token.as_bytes().to_vec()));
        }
        let (url, body) = self.grant(provider.kind, credential)?;
        let issued = Instant::now();
        let token = exchange(client, &url, body).await?;
        let life = Duration::from_secs(token.expires_in);
        let margin = REFRESH_MARGIN.min(life / 2);
        let value = Credential::key(token.access_token.as_bytes().to_vec());
        *cached = Some(Cached {
            token: token.access_token,
            refresh_at: issued + life - margin,
        });
        tracing::debug!(provider = ?provider.id, expires_in = token.expires_in, "exchanged a provider token");
        Ok(value)
    }

    /// The provider's slot, new when its credential changed.
    fn slot(&self, provider: &str, credential: &Credential) -> Arc<Slot> {
        let (_, encoded) = credential.encode();
        let fingerprint: [u8; 32] = Sha256::digest(encoded.as_slice()).into();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(provider.to_owned()).or_insert_with(|| {
            Arc::new(Slot {
                fingerprint,
                token: tokio::sync::Mutex::new(None),
            })
        });
        if slot.fingerprint != fingerprint {
            *slot = Arc::new(Slot {
                fingerprint,
                token: tokio::sync::Mutex::new(None),
            });
        }
        slot.clone()
    }

    /// The token request a provider's credential makes.
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
            let (url, body) = account.grant(oauth::GOOGLE_CLOUD_SCOPE, unix_now())?;
            return Ok((url, Zeroizing::new(body)));
        }
        let part = |name: &'static str| -> Result<&str, GrantError> {
            credential
                .part(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .ok_or(GrantError::MissingPart(name))
        };
        Ok(oauth::entra_grant(
            &self.azure_authority,
            part("tenantId")?,
            part("clientId")?,
            part("clientSecret")?,
        ))
    }
}

/// Posts a grant to a token endpoint and reads the token.
async fn exchange<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    body: Zeroizing<String>,
) -> Result<oauth::Token, TokenError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let request = hyper::Request::post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body.as_bytes().to_vec())))
        .map_err(|_| TokenError::Unreachable)?;
    let call = async {
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
        if !status.is_success() {
            // The endpoint's error code (no secret in it) is worth a log line.
            if let Err(error) = oauth::read_token(&bytes) {
                tracing::warn!(status = status.as_u16(), "token endpoint refused: {error}");
            }
            return Err(TokenError::Refused(status.as_u16()));
        }
        Ok(oauth::read_token(&bytes)?)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, call)
        .await
        .map_err(|_| TokenError::Unreachable)?
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
