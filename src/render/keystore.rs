//! Key store reconciliation: one row per Ready provider with a key. An unchanged key keeps its
//! row byte for byte (so GitOps diffs stay quiet); a changed key is re-sealed and `rotated_at`
//! set; a row for a provider that no longer exists is dropped.

use k8s_openapi::jiff::Timestamp;
use rand::CryptoRng;

use super::providers::CredentialRow;
use crate::crd::common::format_timestamp;
use crate::crypto::keystore::{open, seal};
use crate::crypto::{Credential, CryptoError, KeyRing, KeyStore, KeyStoreRow, RowIdentity};

/// Builds the key store for `credentials` (sorted by id), reusing `previous` rows where possible.
pub fn reconcile(
    previous: Option<&KeyStore>,
    ring: &KeyRing,
    credentials: &[CredentialRow],
    now: Timestamp,
    rng: &mut dyn CryptoRng,
) -> Result<KeyStore, CryptoError> {
    let now = format_timestamp(now);
    let rows = credentials
        .iter()
        .map(|credential| {
            let identity = RowIdentity {
                id: &credential.id,
                tenant_id: &credential.tenant_id,
                provider: &credential.provider,
            };
            let old = previous
                .and_then(|store| store.get(&credential.id))
                .filter(|row| row.tenant_id == credential.tenant_id && row.provider == credential.provider);
            let Some(old) = old else {
                tracing::info!(row = ?credential.id, "key store: new row");
                return new_row(ring, identity, &credential.value, &now, rng);
            };
            let old = old.clone();
            match open(ring, identity, &old.encrypted_value) {
                Ok(stored) if stored.same_as(&credential.value) => Ok(old),
                Ok(_) => {
                    tracing::info!(row = ?credential.id, "key store: key changed, row re-encrypted");
                    Ok(KeyStoreRow {
                        encrypted_value: seal(ring, identity, &credential.value, rng)?,
                        rotated_at: Some(now.clone()),
                        ..old
                    })
                }
                Err(error) => {
                    // The source Secret still holds the key, so nothing is lost: re-seal it and
                    // keep the row's history. Rotation time is left alone because we cannot
                    // know whether the value changed.
                    warn_unreadable(&error);
                    Ok(KeyStoreRow {
                        encrypted_value: seal(ring, identity, &credential.value, rng)?,
                        ..old
                    })
                }
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut store = KeyStore { rows };
    store.sort();
    Ok(store)
}

fn new_row(
    ring: &KeyRing,
    identity: RowIdentity<'_>,
    value: &Credential,
    now: &str,
    rng: &mut dyn CryptoRng,
) -> Result<KeyStoreRow, CryptoError> {
    Ok(KeyStoreRow {
        id: identity.id.to_owned(),
        tenant_id: identity.tenant_id.to_owned(),
        provider: identity.provider.to_owned(),
        encrypted_value: seal(ring, identity, value, rng)?,
        created_at: now.to_owned(),
        rotated_at: None,
    })
}

fn warn_unreadable(error: &CryptoError) {
    tracing::warn!("key store: {error}; re-encrypting it from its source Secret");
}
