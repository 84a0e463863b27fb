//! How a request to a provider proves who sends it: the signer. A dialect names its format's
//! default ([`super::dialect::Dialect::auth`]); signing is pure — the request as it will be sent
//! (method, URL, headers, body) and the opened [`Credential`] in, the request's auth headers out
//! — so a scheme that signs the whole request (AWS SigV4) has everything it reads. A credential
//! fetched first (an exchanged token, the pod's temporary AWS credentials) comes from
//! `gateway::tokens`, and is signed here like a stored one (a token as `Bearer`).
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
    /// AWS Signature Version 4 for `service`, with an access key's parts ([`ACCESS_KEY_ID`],
    /// [`SECRET_ACCESS_KEY`], optional [`SESSION_TOKEN`]); a credential of one key (a Bedrock
    /// API key) is sent as a bearer token instead.
    SigV4 {
        /// The signing name (`bedrock`).
        service: &'static str,
    },
}

pub use crate::crypto::credential::{ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN};

/// What a signature is made for besides the request: the region it is scoped to and the time
/// it is made at (a parameter, so signatures can be checked against published vectors).
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The provider's region (AWS: the region the signature is valid in).
    pub region: Option<&'a str>,
    /// When the request is signed.
    pub time: std::time::SystemTime,
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
    /// A SigV4 signature needs the provider's region.
    #[error("the provider has no region to sign for")]
    NoRegion,
    /// The request could not be signed (an unsignable URL or header).
    #[error("the request could not be signed: {0}")]
    Unsignable(&'static str),
}

impl Auth {
    /// Writes the credential into `request`'s headers as the scheme says.
    pub fn sign(
        self,
        request: &mut hyper::Request<Bytes>,
        credential: &Credential,
        scope: &Scope<'_>,
    ) -> Result<(), SignError> {
        let (name, value) = match self {
            Self::SigV4 { service } if matches!(credential, Credential::Parts(_)) => {
                return sigv4(request, credential, service, scope);
            }
            Self::Bearer | Self::SigV4 { .. } => {
                (AUTHORIZATION, sensitive(&[b"Bearer ", key(credential)?]))
            }
            Self::Header(name) => (
                HeaderName::from_static(name),
                sensitive(&[key(credential)?]),
            ),
        };
        let value = value.ok_or(SignError::NotAHeaderValue(API_KEY))?;
        request.headers_mut().insert(name, value);
        Ok(())
    }
}

/// The credential's API key.
fn key(credential: &Credential) -> Result<&[u8], SignError> {
    credential.api_key().ok_or(SignError::MissingPart(API_KEY))
}

/// Signs `request` with AWS Signature Version 4 (`aws-sigv4`, AWS's own implementation): the
/// method, URL, every header already on the request and the body's hash, scoped to the region,
/// the service and the day. Adds `x-amz-date`, `authorization` and, for temporary credentials,
/// `x-amz-security-token`; the last two marked sensitive. Headers added after signing (hyper's
/// `host` from the URL the signature already covers, `content-length`) are not signed, as
/// AWS's SDKs do.
fn sigv4(
    request: &mut hyper::Request<Bytes>,
    credential: &Credential,
    service: &'static str,
    scope: &Scope<'_>,
) -> Result<(), SignError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let part = |name: &'static str| -> Result<Option<&str>, SignError> {
        credential
            .part(name)
            .map(|value| std::str::from_utf8(value).map_err(|_| SignError::NotAHeaderValue(name)))
            .transpose()
    };
    let access_key_id = part(ACCESS_KEY_ID)?.ok_or(SignError::MissingPart(ACCESS_KEY_ID))?;
    let secret = part(SECRET_ACCESS_KEY)?.ok_or(SignError::MissingPart(SECRET_ACCESS_KEY))?;
    let token = part(SESSION_TOKEN)?;
    let region = scope.region.ok_or(SignError::NoRegion)?;
    let identity = aws_credential_types::Credentials::new(
        access_key_id,
        secret,
        token.map(str::to_owned),
        None,
        "dgidgi",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(scope.time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| SignError::Unsignable("incomplete signing parameters"))?
        .into();
    let uri = request.uri().to_string();
    // A header that is not text cannot be signed; AWS's services take none.
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
        .collect::<Result<Vec<_>, hyper::header::ToStrError>>()
        .map_err(|_| SignError::Unsignable("a header that is not text"))?;
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|_| SignError::Unsignable("the URL"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|_| SignError::Unsignable("the request"))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    for name in [AUTHORIZATION.as_str(), "x-amz-security-token"] {
        if let Some(value) = request.headers_mut().get_mut(name) {
            value.set_sensitive(true);
        }
    }
    Ok(())
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

    fn scope() -> Scope<'static> {
        Scope {
            region: Some("us-east-1"),
            time: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn sigv4_signs_with_an_access_key_and_sends_an_api_key_as_a_bearer_token() {
        let sigv4 = Auth::SigV4 { service: "bedrock" };
        let mut bearer = request();
        sigv4
            .sign(&mut bearer, &Credential::key(b"ABSKkey".to_vec()), &scope())
            .unwrap();
        assert_eq!(bearer.headers()[AUTHORIZATION], "Bearer ABSKkey");
        let parts = |names: &[(&str, &str)]| {
            Credential::parts(
                names
                    .iter()
                    .map(|(n, v)| (*n, zeroize::Zeroizing::new(v.as_bytes().to_vec()))),
            )
            .unwrap()
        };
        let mut signed = hyper::Request::post(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/m%3A0/converse",
        )
        .body(Bytes::from_static(b"{}"))
        .unwrap();
        let key = parts(&[
            (ACCESS_KEY_ID, "AKID"),
            (SECRET_ACCESS_KEY, "secret"),
            (SESSION_TOKEN, "tok"),
        ]);
        sigv4.sign(&mut signed, &key, &scope()).unwrap();
        let authorization = signed.headers()[AUTHORIZATION].to_str().unwrap();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKID/19700101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="),
            "{authorization}"
        );
        assert!(signed.headers()[AUTHORIZATION].is_sensitive());
        assert!(signed.headers()["x-amz-security-token"].is_sensitive());
        assert_eq!(signed.headers()["x-amz-date"], "19700101T000000Z");
        // No region, or no secret: refused, nothing written.
        let mut unsigned = request();
        let nowhere = Scope {
            region: None,
            ..scope()
        };
        assert_eq!(
            sigv4.sign(&mut unsigned, &key, &nowhere),
            Err(SignError::NoRegion)
        );
        let half = parts(&[(ACCESS_KEY_ID, "AKID")]);
        assert_eq!(
            sigv4.sign(&mut unsigned, &half, &scope()),
            Err(SignError::MissingPart(SECRET_ACCESS_KEY))
        );
        assert!(unsigned.headers().is_empty());
    }

    #[test]
    fn bearer_and_header_keys_are_written_sensitive() {
        let key = Credential::key(b"sk-1".to_vec());
        let mut bearer = request();
        Auth::Bearer.sign(&mut bearer, &key, &scope()).unwrap();
        let value = &bearer.headers()[AUTHORIZATION];
        assert_eq!(value, "Bearer sk-1");
        assert!(value.is_sensitive());
        let mut header = request();
        Auth::Header("x-api-key")
            .sign(&mut header, &key, &scope())
            .unwrap();
        assert_eq!(header.headers()["x-api-key"], "sk-1");
        assert!(header.headers()["x-api-key"].is_sensitive());
    }

    #[test]
    fn a_key_that_is_no_header_value_or_no_key_at_all_is_refused() {
        let mut signed = request();
        let newline = Credential::key(b"sk-1\r\nx-injected: 1".to_vec());
        assert_eq!(
            Auth::Bearer.sign(&mut signed, &newline, &scope()),
            Err(SignError::NotAHeaderValue(API_KEY))
        );
        assert!(signed.headers().is_empty());
        let parts = Credential::parts([("accessKeyId", zeroize::Zeroizing::new(b"AKID".to_vec()))])
            .unwrap();
        assert_eq!(
            Auth::Header("api-key").sign(&mut signed, &parts, &scope()),
            Err(SignError::MissingPart(API_KEY))
        );
    }
}
