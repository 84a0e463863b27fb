//! A provider's credential as the key store seals it and a signer reads it: one secret (an API
//! key), or several named parts of one credential (an access key id with its secret and a
//! session token; a service-account JSON; a client id with its secret). Either way it is one
//! key store row under one AES-256-GCM seal, so rotating any part re-seals the row and a part
//! can never be paired with another row's.
//!
//! Parts are encoded canonically (sorted by name, each name and value length-prefixed), so the
//! same parts always encode to the same bytes: the render compares encodings to tell a rotation
//! from a re-render, in constant time.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The part a single-secret credential stands for when a signer asks for parts by name.
pub const API_KEY: &str = "apiKey";
/// An AWS access key's id.
pub const ACCESS_KEY_ID: &str = "accessKeyId";
/// An AWS access key's secret.
pub const SECRET_ACCESS_KEY: &str = "secretAccessKey";
/// The session token of temporary AWS credentials.
pub const SESSION_TOKEN: &str = "sessionToken";
/// A Microsoft Entra directory (tenant) id.
pub const TENANT_ID: &str = "tenantId";
/// A Microsoft Entra application (client) id.
pub const CLIENT_ID: &str = "clientId";
/// A Microsoft Entra application's client secret.
pub const CLIENT_SECRET: &str = "clientSecret";

/// The most parts a credential may have, and the longest name: a row is a credential, not a
/// store of its own.
const MAX_PARTS: usize = 16;
const MAX_NAME_LEN: usize = 64;
/// The longest part: a Secret holds 1 MiB.
const MAX_VALUE_LEN: usize = 1 << 20;

/// One credential. Its `Debug` names the parts, never their values; compare two with
/// [`Credential::same_as`] (constant time), not `==` (tests only).
#[derive(Clone)]
#[cfg_attr(test, derive(PartialEq, Eq))]
pub enum Credential {
    /// One secret: an API key (the key store's original row layout).
    Key(Zeroizing<Vec<u8>>),
    /// Named parts, by name.
    Parts(BTreeMap<String, Zeroizing<Vec<u8>>>),
}

/// How a sealed value lays out its plaintext. Bound into the seal's associated data, so a value
/// cannot be re-read in the other layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The plaintext is the key itself.
    Key,
    /// The plaintext is the canonical encoding of named parts.
    Parts,
}

/// Why a credential's parts cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    /// More parts than a credential holds.
    #[error("a credential has at most {MAX_PARTS} parts")]
    TooMany,
    /// A part name that is empty, too long or not `[A-Za-z0-9_.-]`.
    #[error(
        "credential part names are 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '_', '.', '-'"
    )]
    BadName,
    /// The same part named twice.
    #[error("a credential part is named twice")]
    Duplicate,
    /// A part longer than a Secret may hold.
    #[error("a credential part is longer than {MAX_VALUE_LEN} bytes")]
    TooLong,
    /// An encoding that does not parse (truncated, or not canonical).
    #[error("the credential's parts are not canonically encoded")]
    Malformed,
}

impl Credential {
    /// A single-secret credential.
    pub fn key(value: impl Into<Vec<u8>>) -> Self {
        Self::Key(Zeroizing::new(value.into()))
    }

    /// A credential of named parts, checked: at most [`MAX_PARTS`], names of `[A-Za-z0-9_.-]`.
    pub fn parts<N: Into<String>>(
        parts: impl IntoIterator<Item = (N, Zeroizing<Vec<u8>>)>,
    ) -> Result<Self, PartsError> {
        let mut checked = BTreeMap::new();
        for (name, value) in parts {
            if value.len() > MAX_VALUE_LEN {
                return Err(PartsError::TooLong);
            }
            if checked.insert(name.into(), value).is_some() {
                return Err(PartsError::Duplicate);
            }
            if checked.len() > MAX_PARTS {
                return Err(PartsError::TooMany);
            }
        }
        let parts = checked;
        if !parts.keys().all(|name| valid_name(name)) {
            return Err(PartsError::BadName);
        }
        Ok(Self::Parts(parts))
    }

    /// A part by name. A single-secret credential has one part, [`API_KEY`].
    pub fn part(&self, name: &str) -> Option<&[u8]> {
        match self {
            Self::Key(key) => (name == API_KEY).then_some(key.as_slice()),
            Self::Parts(parts) => parts.get(name).map(|value| value.as_slice()),
        }
    }

    /// The API key: the secret of a single-secret credential, or the [`API_KEY`] part.
    pub fn api_key(&self) -> Option<&[u8]> {
        self.part(API_KEY)
    }

    /// The layout and plaintext the key store seals.
    pub fn encode(&self) -> (Layout, Zeroizing<Vec<u8>>) {
        match self {
            Self::Key(key) => (Layout::Key, key.clone()),
            Self::Parts(parts) => {
                let size = parts.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
                let mut out = Zeroizing::new(Vec::with_capacity(size));
                for (name, value) in parts {
                    for field in [name.as_bytes(), value.as_slice()] {
                        // Both bounded far below 4 GiB when built by `parts` (names by
                        // MAX_NAME_LEN, values by MAX_VALUE_LEN).
                        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
                        out.extend_from_slice(field);
                    }
                }
                (Layout::Parts, out)
            }
        }
    }

    /// Reads what [`Credential::encode`] wrote. A parts encoding must be canonical (names
    /// sorted and unique), so one credential has exactly one encoding.
    pub fn decode(layout: Layout, plaintext: Zeroizing<Vec<u8>>) -> Result<Self, PartsError> {
        match layout {
            Layout::Key => Ok(Self::Key(plaintext)),
            Layout::Parts => {
                let mut rest = plaintext.as_slice();
                let mut parts = BTreeMap::new();
                let mut previous: Option<String> = None;
                while !rest.is_empty() {
                    let name = take_field(&mut rest)?;
                    let value = take_field(&mut rest)?;
                    let name = std::str::from_utf8(name)
                        .map_err(|_| PartsError::Malformed)?
                        .to_owned();
                    if previous.as_ref().is_some_and(|p| *p >= name) {
                        return Err(PartsError::Malformed);
                    }
                    previous = Some(name.clone());
                    parts.insert(name, Zeroizing::new(value.to_vec()));
                }
                Self::parts(parts)
            }
        }
    }

    /// Whether two credentials are the same, comparing their encodings in constant time (for
    /// equal lengths): telling a rotated key from an unchanged one leaks nothing of either.
    pub fn same_as(&self, other: &Self) -> bool {
        let (layout, mine) = self.encode();
        let (other_layout, theirs) = other.encode();
        layout == other_layout && bool::from(mine.as_slice().ct_eq(theirs.as_slice()))
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(_) => f.write_str("Credential::Key(<redacted>)"),
            Self::Parts(parts) => f
                .debug_tuple("Credential::Parts")
                .field(&parts.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn take_field<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], PartsError> {
    let (length, tail) = rest.split_first_chunk::<4>().ok_or(PartsError::Malformed)?;
    let length = u32::from_be_bytes(*length) as usize;
    if tail.len() < length {
        return Err(PartsError::Malformed);
    }
    let (field, tail) = tail.split_at(length);
    *rest = tail;
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws() -> Credential {
        Credential::parts([
            ("secretAccessKey", Zeroizing::new(b"wJalrXUtnFEMI".to_vec())),
            ("accessKeyId", Zeroizing::new(b"AKIDEXAMPLE".to_vec())),
        ])
        .unwrap()
    }

    #[test]
    fn parts_round_trip_canonically_whatever_order_they_came_in() {
        let (layout, bytes) = aws().encode();
        assert_eq!(layout, Layout::Parts);
        let again = Credential::decode(layout, bytes.clone()).unwrap();
        assert_eq!(again, aws());
        assert_eq!(again.part("accessKeyId"), Some(b"AKIDEXAMPLE".as_slice()));
        assert_eq!(again.api_key(), None);
        // Sorted by name: accessKeyId first.
        assert_eq!(&bytes[4..15], b"accessKeyId");
    }

    #[test]
    fn a_single_key_is_its_own_plaintext_and_the_api_key_part() {
        let key = Credential::key(b"sk-123".to_vec());
        let (layout, bytes) = key.encode();
        assert_eq!(
            (layout, bytes.as_slice()),
            (Layout::Key, b"sk-123".as_slice())
        );
        assert_eq!(key.api_key(), Some(b"sk-123".as_slice()));
        assert_eq!(key.part("secretAccessKey"), None);
    }

    #[test]
    fn non_canonical_truncated_or_oversized_encodings_are_refused() {
        let (_, bytes) = aws().encode();
        let truncated = Zeroizing::new(bytes[..bytes.len() - 1].to_vec());
        assert_eq!(
            Credential::decode(Layout::Parts, truncated),
            Err(PartsError::Malformed)
        );
        // The same part twice (not strictly ascending).
        let mut twice = bytes.to_vec();
        twice.extend_from_slice(&bytes);
        assert_eq!(
            Credential::decode(Layout::Parts, Zeroizing::new(twice)),
            Err(PartsError::Malformed)
        );
        let many = (0..=MAX_PARTS).map(|i| (format!("p{i:02}"), Zeroizing::new(vec![1])));
        assert_eq!(Credential::parts(many), Err(PartsError::TooMany));
        let bad = [("no spaces", Zeroizing::new(vec![1]))];
        assert_eq!(Credential::parts(bad), Err(PartsError::BadName));
        let twice = [
            ("a", Zeroizing::new(vec![1])),
            ("a", Zeroizing::new(vec![2])),
        ];
        assert_eq!(Credential::parts(twice), Err(PartsError::Duplicate));
        let long = [("a", Zeroizing::new(vec![0; MAX_VALUE_LEN + 1]))];
        assert_eq!(Credential::parts(long), Err(PartsError::TooLong));
    }

    #[test]
    fn rotation_of_any_part_is_a_different_credential() {
        let rotated = Credential::parts([
            ("accessKeyId", Zeroizing::new(b"AKIDEXAMPLE".to_vec())),
            ("secretAccessKey", Zeroizing::new(b"rotated".to_vec())),
        ])
        .unwrap();
        assert!(aws().same_as(&aws()));
        assert!(!aws().same_as(&rotated));
        assert!(
            !Credential::key(b"x".to_vec())
                .same_as(&Credential::parts([(API_KEY, Zeroizing::new(b"x".to_vec()))]).unwrap())
        );
    }

    #[test]
    fn debug_names_parts_and_never_values() {
        let shown = format!("{:?} {:?}", aws(), Credential::key(b"sk-secret".to_vec()));
        assert!(shown.contains("accessKeyId"), "{shown}");
        assert!(
            !shown.contains("AKIDEXAMPLE")
                && !shown.contains("wJalr")
                && !shown.contains("sk-secret"),
            "{shown}"
        );
    }
}
