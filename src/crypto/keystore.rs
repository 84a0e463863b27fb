//! The key store: one row per stored provider key, the value sealed with AES-256-GCM under a
//! master key, and the row's identity bound in as associated data so a ciphertext copied into
//! another row, tenant or provider fails to decrypt.
//!
//! Sealed values read `dgv1:<master key id>:<base64(nonce ‖ ciphertext ‖ tag)>` for a
//! single-secret credential (an API key) and `dgv2:…` for one of several named parts (see
//! [`super::credential`]); the version is bound into the associated data too, so a value cannot
//! be re-read in the other layout.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::credential::{Credential, Layout};
use super::{CryptoError, KeyRing};

const NONCE_LEN: usize = 12;

/// The prefix of a sealed value and the domain tag of its associated data, per layout.
fn version(layout: Layout) -> (&'static str, &'static [u8]) {
    match layout {
        Layout::Key => ("dgv1", b"dgidgi/keystore/v1"),
        Layout::Parts => ("dgv2", b"dgidgi/keystore/v2"),
    }
}

fn layout_of(prefix: &str) -> Option<Layout> {
    [Layout::Key, Layout::Parts]
        .into_iter()
        .find(|&layout| version(layout).0 == prefix)
}

/// The Secret document holding every row.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyStore {
    /// Rows, sorted by id.
    pub rows: Vec<KeyStoreRow>,
}

/// One stored provider key, with exactly the columns the product brief names.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyStoreRow {
    /// Row id: `<namespace>/<LlmProvider name>`.
    pub id: String,
    /// Owner: the tenant namespace, or the platform namespace for platform keys.
    pub tenant_id: String,
    /// Provider type, e.g. `openai`.
    pub provider: String,
    /// The sealed key (`dgv1:<key id>:<base64>`).
    pub encrypted_value: String,
    /// When the row was first written (RFC 3339).
    pub created_at: String,
    /// When the source value last changed (RFC 3339); null until it does.
    pub rotated_at: Option<String>,
}

/// The parts of a row that are bound into its ciphertext.
#[derive(Clone, Copy, Debug)]
pub struct RowIdentity<'a> {
    /// Row id.
    pub id: &'a str,
    /// Owner.
    pub tenant_id: &'a str,
    /// Provider type.
    pub provider: &'a str,
}

impl<'a> From<&'a KeyStoreRow> for RowIdentity<'a> {
    fn from(row: &'a KeyStoreRow) -> Self {
        Self {
            id: &row.id,
            tenant_id: &row.tenant_id,
            provider: &row.provider,
        }
    }
}

/// Associated data: the layout's domain tag, then each field length-prefixed so no two
/// identities encode to the same bytes.
fn associated_data(layout: Layout, key_id: &str, identity: RowIdentity<'_>) -> Vec<u8> {
    let domain = version(layout).1;
    let fields = [key_id, identity.id, identity.tenant_id, identity.provider];
    let mut aad =
        Vec::with_capacity(domain.len() + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    aad.extend_from_slice(domain);
    for field in fields {
        aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    aad
}

/// Seals a credential for the row `identity` under the ring's active key with a fresh nonce.
pub fn seal(
    ring: &KeyRing,
    identity: RowIdentity<'_>,
    credential: &Credential,
    rng: &mut dyn CryptoRng,
) -> Result<String, CryptoError> {
    let (layout, plaintext) = credential.encode();
    let plaintext = plaintext.as_slice();
    let master = ring.active();
    let cipher = Aes256Gcm::new(master.key.as_ref().into());
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let aad = associated_data(layout, &master.id, identity);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt {
            row: identity.id.to_owned(),
        })?;
    let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ciphertext);
    let prefix = version(layout).0;
    Ok(format!("{prefix}:{}:{}", master.id, STANDARD.encode(blob)))
}

/// Opens a sealed value for the row `identity`; fails if the value was sealed for another row,
/// tampered with, or sealed under a key the ring no longer holds.
pub fn open(
    ring: &KeyRing,
    identity: RowIdentity<'_>,
    sealed: &str,
) -> Result<Credential, CryptoError> {
    let malformed = || CryptoError::Malformed {
        row: identity.id.to_owned(),
    };
    let mut parts = sealed.splitn(3, ':');
    let (Some(prefix), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let layout = layout_of(prefix).ok_or_else(malformed)?;
    let master = ring.get(key_id).ok_or_else(|| CryptoError::UnknownKeyId {
        row: identity.id.to_owned(),
        key_id: key_id.to_owned(),
    })?;
    let blob = STANDARD.decode(body).map_err(|_| malformed())?;
    if blob.len() < NONCE_LEN + 16 {
        return Err(malformed());
    }
    let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(master.key.as_ref().into());
    let aad = associated_data(layout, key_id, identity);
    let plaintext = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt {
            row: identity.id.to_owned(),
        })?;
    Credential::decode(layout, plaintext).map_err(|_| malformed())
}

impl KeyStore {
    /// Parses the key store Secret data (`keys.yaml`).
    pub fn from_yaml(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut store: Self = serde_yaml::from_slice(bytes).map_err(|e| {
            CryptoError::KeyStoreFormat(crate::redact::serde_message(&e.to_string()))
        })?;
        // Sorted as render writes it, whoever wrote it: `get` searches by halves.
        store.sort();
        Ok(store)
    }

    /// Puts the rows in id order (what [`KeyStore::get`] relies on).
    pub fn sort(&mut self) {
        self.rows.sort_by(|a, b| a.id.cmp(&b.id));
    }

    /// Serializes the store, rows in id order.
    pub fn to_yaml(&self) -> Result<String, CryptoError> {
        serde_yaml::to_string(self).map_err(|e| CryptoError::Serialize {
            what: "the key store",
            message: e.to_string(),
        })
    }

    /// Finds a row by id (rows are in id order: a store of 10,000 tenant keys is not scanned
    /// for every provider that needs one).
    pub fn get(&self, id: &str) -> Option<&KeyStoreRow> {
        self.rows
            .binary_search_by(|row| row.id.as_str().cmp(id))
            .ok()
            .map(|index| &self.rows[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use rand::RngCore as _;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn key(value: &[u8]) -> Credential {
        Credential::key(value.to_vec())
    }

    fn identity<'a>(id: &'a str, tenant: &'a str) -> RowIdentity<'a> {
        RowIdentity {
            id,
            tenant_id: tenant,
            provider: "openai",
        }
    }

    #[test]
    fn round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let ring = KeyRing::generate(&mut rng);
        let who = identity("team-a/openai", "team-a");
        let sealed = seal(&ring, who, &key(b"sk-secret-value"), &mut rng).unwrap();
        assert!(sealed.starts_with("dgv1:k1:"));
        assert!(!sealed.contains("sk-secret-value"));
        assert_eq!(
            open(&ring, who, &sealed).unwrap().api_key().unwrap(),
            b"sk-secret-value"
        );
    }

    #[test]
    fn fresh_nonce_each_time() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let ring = KeyRing::generate(&mut rng);
        let who = identity("team-a/openai", "team-a");
        assert_ne!(
            seal(&ring, who, &key(b"k"), &mut rng).unwrap(),
            seal(&ring, who, &key(b"k"), &mut rng).unwrap()
        );
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let ring = KeyRing::generate(&mut rng);
        let who = identity("team-a/openai", "team-a");
        let sealed = seal(&ring, who, &key(b"sk-secret-value"), &mut rng).unwrap();
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut blob = STANDARD.decode(body).unwrap();
        for index in [0, NONCE_LEN, blob.len() - 1] {
            blob[index] ^= 0x01;
            let tampered = format!("{head}:{}", STANDARD.encode(&blob));
            assert!(matches!(
                open(&ring, who, &tampered),
                Err(CryptoError::Decrypt { .. })
            ));
            blob[index] ^= 0x01;
        }
        assert!(matches!(
            open(&ring, who, "dgv1:k1:%%%"),
            Err(CryptoError::Malformed { .. })
        ));
        assert!(matches!(
            open(&ring, who, "plain"),
            Err(CryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn rows_swapped_between_tenants_fail() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let ring = KeyRing::generate(&mut rng);
        let a = identity("team-a/openai", "team-a");
        let sealed_for_a = seal(&ring, a, &key(b"team-a-key"), &mut rng).unwrap();
        for other in [
            identity("team-b/openai", "team-b"),
            identity("team-a/openai", "team-b"),
            identity("team-a/other", "team-a"),
            RowIdentity {
                provider: "anthropic",
                ..a
            },
        ] {
            assert!(matches!(
                open(&ring, other, &sealed_for_a),
                Err(CryptoError::Decrypt { .. })
            ));
        }
    }

    #[test]
    fn old_key_id_still_opens_after_rotation() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let old_ring = KeyRing::generate(&mut rng);
        let who = identity("team-a/openai", "team-a");
        let sealed_old = seal(&old_ring, who, &key(b"old-row"), &mut rng).unwrap();
        let mut new_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(new_key.as_mut());
        let old_key = MasterKey {
            id: "k1".into(),
            key: old_ring.active().key.clone(),
        };
        let rotated = KeyRing::new(
            "k2".into(),
            vec![
                old_key,
                MasterKey {
                    id: "k2".into(),
                    key: new_key,
                },
            ],
        )
        .unwrap();
        assert_eq!(
            open(&rotated, who, &sealed_old).unwrap().api_key().unwrap(),
            b"old-row"
        );
        let sealed_new = seal(&rotated, who, &key(b"new-row"), &mut rng).unwrap();
        assert!(sealed_new.starts_with("dgv1:k2:"));
        // The old ring cannot open what the new key sealed.
        assert!(matches!(
            open(&old_ring, who, &sealed_new),
            Err(CryptoError::UnknownKeyId { .. })
        ));
    }

    #[test]
    fn key_id_is_authenticated() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let ring1 = KeyRing::generate(&mut rng);
        let k1 = ring1.active().key.clone();
        let ring = KeyRing::new(
            "k1".into(),
            vec![
                MasterKey {
                    id: "k1".into(),
                    key: k1.clone(),
                },
                MasterKey {
                    id: "k2".into(),
                    key: k1,
                },
            ],
        )
        .unwrap();
        let who = identity("team-a/openai", "team-a");
        let sealed = seal(&ring, who, &key(b"v"), &mut rng).unwrap();
        let relabelled = sealed.replacen(":k1:", ":k2:", 1);
        assert!(matches!(
            open(&ring, who, &relabelled),
            Err(CryptoError::Decrypt { .. })
        ));
    }

    #[test]
    fn a_credential_of_parts_is_one_row_and_cannot_be_read_as_a_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let ring = KeyRing::generate(&mut rng);
        let who = identity("team-a/bedrock", "team-a");
        let parts = Credential::parts([
            ("accessKeyId", Zeroizing::new(b"AKIDEXAMPLE".to_vec())),
            ("secretAccessKey", Zeroizing::new(b"wJalrXUtnFEMI".to_vec())),
        ])
        .unwrap();
        let sealed = seal(&ring, who, &parts, &mut rng).unwrap();
        assert!(sealed.starts_with("dgv2:k1:"), "{sealed}");
        assert!(!sealed.contains("AKIDEXAMPLE"));
        assert_eq!(open(&ring, who, &sealed).unwrap(), parts);
        // The layout is authenticated: relabelled as a single key, it does not open.
        let relabelled = sealed.replacen("dgv2:", "dgv1:", 1);
        assert!(matches!(
            open(&ring, who, &relabelled),
            Err(CryptoError::Decrypt { .. })
        ));
        assert!(matches!(
            open(&ring, who, &sealed.replacen("dgv2:", "dgv9:", 1)),
            Err(CryptoError::Malformed { .. })
        ));
    }
}
