//! Gateway access keys: what a tenant's applications send as `Authorization: Bearer`.
//! Generated with 256 bits of entropy; the config holds only their SHA-256 hashes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Prefix that makes a leaked dgidgi key easy to recognise for secret scanners.
pub const PREFIX: &str = "dgk_";

/// Shortest access key accepted when a tenant supplies its own, so a guessable key is refused.
pub const MIN_LEN: usize = 32;

/// A new random access key (`dgk_` + 43 base64url characters).
pub fn generate(rng: &mut dyn CryptoRng) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(bytes.as_mut());
    Zeroizing::new(format!(
        "{PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    ))
}

/// Lowercase hex SHA-256 of a key, as stored in the config and looked up by the gateway.
pub fn hash(key: &[u8]) -> String {
    hex::encode(Sha256::digest(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn generated_keys_are_long_prefixed_and_distinct() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let a = generate(&mut rng);
        let b = generate(&mut rng);
        assert!(a.starts_with(PREFIX));
        assert_eq!(a.len(), PREFIX.len() + 43);
        assert!(a.len() >= MIN_LEN);
        assert_ne!(*a, *b);
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
