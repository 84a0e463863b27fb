//! How a request to a provider proves who sends it: the signer. A dialect names its format's
//! default ([`super::dialect::Dialect::auth`]); signing is pure — the request as it will be sent
//! (method, URL, headers, body) and the opened [`Credential`] in, the request's auth headers out
//! — so a scheme that signs the whole request (AWS SigV4) has everything it reads, and a scheme
//! that needs a token exchanged first gets its token as a credential part from whatever
//! fetched it, not from here.
//!
//! Every value written is marked sensitive (hyper then keeps it out of its own debug output,
//! and HPACK out of its dynamic table).

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};

use crate::crypto::Credential;
use crate::crypto::credential::API_KEY;

/// A scheme for authenticating a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <api key>`.
    Bearer,
    /// The API key as the whole value of this header.
    Header(&'static str),
}

/// Why a request could not be signed. Never carries credential bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The credential lacks a part the scheme needs.
    #[error("the provider's credential has no {0:?} part")]
    MissingPart(&'static str),
    /// A part holds bytes no HTTP header may carry (a newline, a control character).
    #[error("the provider's credential part {0:?} is not a valid header value")]
    NotAHeaderValue(&'static str),
}

impl Auth {
    /// Writes the credential into `request`'s headers as the scheme says.
    pub fn sign(
        self,
        request: &mut hyper::Request<Bytes>,
        credential: &Credential,
    ) -> Result<(), SignError> {
        let key = credential
            .api_key()
            .ok_or(SignError::MissingPart(API_KEY))?;
        let (name, value) = match self {
            Self::Bearer => (AUTHORIZATION, sensitive(&[b"Bearer ", key])),
            Self::Header(name) => (HeaderName::from_static(name), sensitive(&[key])),
        };
        let value = value.ok_or(SignError::NotAHeaderValue(API_KEY))?;
        request.headers_mut().insert(name, value);
        Ok(())
    }
}

/// A sensitive header value of the concatenated pieces; the joined copy is wiped.
fn sensitive(pieces: &[&[u8]]) -> Option<HeaderValue> {
    let joined = zeroize::Zeroizing::new(pieces.concat());
    let mut value = HeaderValue::from_bytes(&joined).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> hyper::Request<Bytes> {
        hyper::Request::new(Bytes::from_static(b"{}"))
    }

    #[test]
    fn bearer_and_header_keys_are_written_sensitive() {
        let key = Credential::key(b"sk-1".to_vec());
        let mut bearer = request();
        Auth::Bearer.sign(&mut bearer, &key).unwrap();
        let value = &bearer.headers()[AUTHORIZATION];
        assert_eq!(value, "Bearer sk-1");
        assert!(value.is_sensitive());
        let mut header = request();
        Auth::Header("x-api-key").sign(&mut header, &key).unwrap();
        assert_eq!(header.headers()["x-api-key"], "sk-1");
        assert!(header.headers()["x-api-key"].is_sensitive());
    }

    #[test]
    fn a_key_that_is_no_header_value_or_no_key_at_all_is_refused() {
        let mut signed = request();
        let newline = Credential::key(b"sk-1\r\nx-injected: 1".to_vec());
        assert_eq!(
            Auth::Bearer.sign(&mut signed, &newline),
            Err(SignError::NotAHeaderValue(API_KEY))
        );
        assert!(signed.headers().is_empty());
        let parts = Credential::parts([("accessKeyId", zeroize::Zeroizing::new(b"AKID".to_vec()))])
            .unwrap();
        assert_eq!(
            Auth::Header("api-key").sign(&mut signed, &parts),
            Err(SignError::MissingPart(API_KEY))
        );
    }
}
