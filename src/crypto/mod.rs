//! Key material: the master key ring, AES-256-GCM sealing of key store rows, and gateway access
//! keys. Pure functions; randomness is passed in so callers (and tests) control it.

pub mod access_key;
pub mod credential;
pub mod keyring;
pub mod keystore;

pub use credential::Credential;
pub use keyring::{KeyRing, MasterKey};
pub use keystore::{KeyStore, KeyStoreRow, RowIdentity};

/// Why key material could not be used. Messages never include key bytes or plaintexts.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key ring document does not parse.
    #[error("master key ring is not valid YAML of the expected shape: {0}")]
    KeyRingFormat(String),
    /// A key ring entry is unusable.
    #[error("master key ring entry {id:?}: {problem}")]
    KeyRingEntry {
        /// The key id.
        id: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The `active` key id names no key.
    #[error("master key ring: active key id {0:?} is not in the ring")]
    ActiveKeyMissing(String),
    /// The key store document does not parse.
    #[error("key store is not valid YAML of the expected shape: {0}")]
    KeyStoreFormat(String),
    /// A sealed value does not have the `dgv1:<key id>:<base64>` shape.
    #[error("sealed value of row {row:?} is malformed")]
    Malformed {
        /// The row id.
        row: String,
    },
    /// The sealed value names a key id the ring no longer holds.
    #[error("row {row:?} is sealed with master key {key_id:?}, which is not in the key ring")]
    UnknownKeyId {
        /// The row id.
        row: String,
        /// The key id.
        key_id: String,
    },
    /// Key material could not be serialized (never expected; refused rather than written empty).
    #[error("could not serialize {what}: {message}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The serializer's message.
        message: String,
    },
    /// AES-GCM refused to encrypt (inputs beyond its limits).
    #[error("could not encrypt row {row:?}")]
    Encrypt {
        /// The row id.
        row: String,
    },
    /// Authentication failed: wrong key, tampered ciphertext, or a value moved from another row.
    #[error("row {row:?} failed to decrypt (tampered, or moved from another row or tenant)")]
    Decrypt {
        /// The row id.
        row: String,
    },
}
