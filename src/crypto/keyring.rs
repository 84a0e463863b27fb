//! The master key ring: 256-bit key-encryption keys with ids. New rows are sealed under the
//! `active` key; rows sealed under an older key keep decrypting as long as its id stays in the
//! ring, so a new master key can be rolled in without re-encrypting everything at once.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::CryptoError;

/// Id given to the key generated for a new ring.
pub const FIRST_KEY_ID: &str = "k1";

/// One master key.
pub struct MasterKey {
    /// Short id stored in every sealed value (`[a-z0-9][a-z0-9-]*`, at most 32 characters).
    pub id: String,
    /// The 256-bit key, wiped from memory on drop.
    pub key: Zeroizing<[u8; 32]>,
}

/// The ring of master keys, with the one new rows are sealed under.
pub struct KeyRing {
    active: String,
    keys: Vec<MasterKey>,
}

/// Same active key and the same keys in the same order: two copies of one ring (`dgidgi up` and
/// `render --out --config-dir` read the ring back from both places they wrote it).
impl PartialEq for KeyRing {
    fn eq(&self, other: &Self) -> bool {
        self.active == other.active
            && self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.id == b.id && *a.key == *b.key)
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct KeyRingFile {
    active: String,
    keys: Vec<KeyRingEntry>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct KeyRingEntry {
    id: String,
    key: Zeroizing<String>,
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl KeyRing {
    /// A new ring holding one freshly generated key.
    pub fn generate(rng: &mut dyn CryptoRng) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        Self {
            active: FIRST_KEY_ID.to_owned(),
            keys: vec![MasterKey {
                id: FIRST_KEY_ID.to_owned(),
                key,
            }],
        }
    }

    /// Builds a ring from keys, checking ids and that `active` is among them.
    pub fn new(active: String, keys: Vec<MasterKey>) -> Result<Self, CryptoError> {
        for (index, key) in keys.iter().enumerate() {
            if !valid_key_id(&key.id) {
                return Err(CryptoError::KeyRingEntry {
                    id: key.id.clone(),
                    problem: "id must be 1-32 characters of a-z, 0-9 and '-'",
                });
            }
            if keys[..index].iter().any(|other| other.id == key.id) {
                return Err(CryptoError::KeyRingEntry {
                    id: key.id.clone(),
                    problem: "id appears twice",
                });
            }
        }
        if !keys.iter().any(|k| k.id == active) {
            return Err(CryptoError::ActiveKeyMissing(active));
        }
        Ok(Self { active, keys })
    }

    /// Parses the ring from its Secret data (`master-key.yaml`).
    pub fn from_yaml(bytes: &[u8]) -> Result<Self, CryptoError> {
        let file: KeyRingFile = serde_yaml::from_slice(bytes).map_err(|e| {
            CryptoError::KeyRingFormat(crate::redact::serde_message(&e.to_string()))
        })?;
        let mut keys = Vec::with_capacity(file.keys.len());
        for entry in file.keys {
            let decoded = Zeroizing::new(STANDARD.decode(entry.key.as_bytes()).map_err(|_| {
                CryptoError::KeyRingEntry {
                    id: entry.id.clone(),
                    problem: "key is not valid base64",
                }
            })?);
            let key: [u8; 32] =
                decoded
                    .as_slice()
                    .try_into()
                    .map_err(|_| CryptoError::KeyRingEntry {
                        id: entry.id.clone(),
                        problem: "key must be exactly 32 bytes (AES-256)",
                    })?;
            keys.push(MasterKey {
                id: entry.id,
                key: Zeroizing::new(key),
            });
        }
        Self::new(file.active, keys)
    }

    /// Serializes the ring for its Secret, keys in the order they were given.
    pub fn to_yaml(&self) -> Result<String, CryptoError> {
        let file = KeyRingFile {
            active: self.active.clone(),
            keys: self
                .keys
                .iter()
                .map(|k| KeyRingEntry {
                    id: k.id.clone(),
                    key: Zeroizing::new(STANDARD.encode(k.key.as_ref())),
                })
                .collect(),
        };
        // A struct of strings always serializes.
        serde_yaml::to_string(&file).map_err(|e| CryptoError::Serialize {
            what: "the master key ring",
            message: e.to_string(),
        })
    }

    /// The key new rows are sealed under.
    pub fn active(&self) -> &MasterKey {
        // `new` guarantees the active id is present.
        self.get(&self.active).unwrap_or(&self.keys[0])
    }

    /// Looks a key up by id.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Ids in the ring, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn round_trips_through_yaml() {
        let ring = KeyRing::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let back = KeyRing::from_yaml(ring.to_yaml().unwrap().as_bytes()).unwrap();
        assert_eq!(back.active().id, "k1");
        assert_eq!(*back.active().key, *ring.active().key);
        assert_eq!(ring.to_yaml().unwrap(), back.to_yaml().unwrap());
    }

    #[test]
    fn refuses_corrupt_rings() {
        let cases = [
            ("not: [valid", "not valid YAML"),
            (
                "active: k2\nkeys:\n- id: k1\n  key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                "not in the ring",
            ),
            ("active: k1\nkeys:\n- id: k1\n  key: c2hvcnQ=\n", "32 bytes"),
            ("active: k1\nkeys:\n- id: k1\n  key: '!!!'\n", "base64"),
            (
                "active: K1\nkeys:\n- id: K1\n  key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                "id must be",
            ),
        ];
        for (yaml, expected) in cases {
            let err = KeyRing::from_yaml(yaml.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{yaml:?} gave {err:?}");
        }
    }

    #[test]
    fn debug_output_hides_key_bytes() {
        let ring = KeyRing::generate(&mut ChaCha20Rng::seed_from_u64(2));
        let debug = format!("{ring:?}");
        let encoded = STANDARD.encode(ring.active().key.as_ref());
        assert!(!debug.contains(&encoded));
        assert!(debug.contains("k1"));
    }
}
