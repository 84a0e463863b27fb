//! The grants by which the clouds hand out short-lived credentials: a Google service account's
//! signed JWT (RFC 7523) for Vertex AI, a Microsoft Entra application's client credentials (or
//! a workload's federated token) for Azure OpenAI, a web identity token exchanged at AWS STS
//! (IRSA), and the answers of EKS Pod Identity's agent and GKE's metadata server. Pure: what to
//! send and how to read the answer; the exchange itself and the cache are `gateway::tokens`.
//!
//! The JWT is signed with `ring` (RS256, PKCS#1 v1.5 with SHA-256), which rustls already
//! brings: a JWT crate would add a second RSA implementation (the `rsa` crate, with its timing
//! advisory RUSTSEC-2023-0071) or aws-lc for the one signature the gateway makes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;
use zeroize::Zeroizing;

/// The scope a Vertex AI token is asked for.
pub const GOOGLE_CLOUD_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The scope an Azure OpenAI token is asked for in Azure's public cloud.
pub const AZURE_COGNITIVE_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// The scope of Azure OpenAI tokens at an Entra `authority`: the sovereign clouds (US
/// Government, China) have their own.
pub fn azure_scope(authority: &str) -> &'static str {
    let host = url::Url::parse(authority)
        .ok()
        .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host.ends_with("microsoftonline.us") {
        "https://cognitiveservices.azure.us/.default"
    } else if host.ends_with("chinacloudapi.cn") {
        "https://cognitiveservices.azure.cn/.default"
    } else {
        AZURE_COGNITIVE_SCOPE
    }
}
/// Microsoft Entra's authority when `AZURE_AUTHORITY_HOST` names none.
pub const AZURE_AUTHORITY: &str = "https://login.microsoftonline.com";
/// How long a signed assertion is valid: Google's maximum.
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// Why a token could not be asked for or read. Never carries a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The service-account key is not a Google service account's JSON key.
    #[error("the credential is not a service account JSON key: {0}")]
    NotAServiceAccount(&'static str),
    /// Its private key is not an RSA key in PKCS#8 PEM.
    #[error("the service account's private_key is not an RSA private key in PKCS#8 PEM")]
    BadPrivateKey,
    /// The credential lacks a part the grant needs.
    #[error("the credential has no {0:?} part")]
    MissingPart(&'static str),
    /// The token endpoint answered something that is not a token.
    #[error("the token endpoint's answer is not a token: {0}")]
    BadAnswer(String),
}

/// A Google service account's JSON key, the fields a token grant reads. Its `Debug` shows the
/// account, never the key.
#[derive(Deserialize)]
pub struct ServiceAccount {
    /// The account (`name@project.iam.gserviceaccount.com`): the assertion's issuer.
    pub client_email: String,
    /// The key's id, named in the assertion's header.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// The RSA private key, PKCS#8 PEM.
    private_key: Zeroizing<String>,
    /// Where the assertion is exchanged.
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads a JSON key. Only `type: service_account` keys are taken.
    pub fn from_json(json: &[u8]) -> Result<Self, GrantError> {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<&'a str>,
        }
        let kind: Kind<'_> = serde_json::from_slice(json)
            .map_err(|_| GrantError::NotAServiceAccount("not a JSON object"))?;
        if kind.kind != Some("service_account") {
            return Err(GrantError::NotAServiceAccount(
                "its type is not service_account",
            ));
        }
        serde_json::from_slice(json).map_err(|_| {
            GrantError::NotAServiceAccount("client_email, private_key or token_uri is missing")
        })
    }

    /// The token request: `token_uri` and its form body, a JWT signed with the account's key
    /// asking for `scope`, issued at `now` (Unix seconds).
    pub fn grant(&self, scope: &str, now: u64) -> Result<(String, String), GrantError> {
        let header = serde_json::json!({
            "alg": "RS256", "typ": "JWT", "kid": self.private_key_id,
        });
        let claims = serde_json::json!({
            "iss": self.client_email, "scope": scope, "aud": self.token_uri,
            "iat": now, "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.sign(signing_input.as_bytes())?;
        let assertion = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        Ok((self.token_uri.clone(), body))
    }

    /// RS256 over `message` with the account's key.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, GrantError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(self.private_key.as_bytes())
            .map_err(|_| GrantError::BadPrivateKey)?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|_| GrantError::BadPrivateKey)?;
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            message,
            &mut signature,
        )
        .map_err(|_| GrantError::BadPrivateKey)?;
        Ok(signature)
    }
}

/// A Microsoft Entra application's client-credentials token request for Azure OpenAI: the
/// token URL under `authority` and its form body.
pub fn entra_grant(
    authority: &str,
    tenant_id: &str,
    client_id: &str,
    client_secret: &str,
) -> (String, Zeroizing<String>) {
    entra_request(
        authority,
        tenant_id,
        client_id,
        &[("client_secret", client_secret)],
    )
}

/// A Microsoft Entra token request with a workload's federated token (Azure Workload
/// Identity): the token URL under `authority` and its form body.
pub fn entra_federated_grant(
    authority: &str,
    tenant_id: &str,
    client_id: &str,
    federated_token: &str,
) -> (String, Zeroizing<String>) {
    let assertion = [
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", federated_token.trim()),
    ];
    entra_request(authority, tenant_id, client_id, &assertion)
}

/// Entra's client-credentials request for Azure OpenAI's scope, proving the client with
/// `proof` (a secret, or an assertion).
fn entra_request(
    authority: &str,
    tenant_id: &str,
    client_id: &str,
    proof: &[(&str, &str)],
) -> (String, Zeroizing<String>) {
    let tenant: String = url::form_urlencoded::byte_serialize(tenant_id.as_bytes()).collect();
    let url = format!(
        "{}/{tenant}/oauth2/v2.0/token",
        authority.trim_end_matches('/')
    );
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_id", client_id)
        .extend_pairs(proof.iter().copied())
        .append_pair("scope", azure_scope(authority));
    (url, Zeroizing::new(form.finish()))
}

/// An AWS STS `AssumeRoleWithWebIdentity` request (IRSA; unsigned: the web identity token is
/// the proof): its form body for `sts_url`.
pub fn sts_web_identity_grant(
    role_arn: &str,
    session_name: &str,
    web_identity_token: &str,
) -> Zeroizing<String> {
    Zeroizing::new(
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", role_arn)
            .append_pair("RoleSessionName", session_name)
            .append_pair("WebIdentityToken", web_identity_token.trim())
            .append_pair("DurationSeconds", "3600")
            .finish(),
    )
}

/// Temporary AWS credentials and when they expire (`Debug` names the parts, never a value).
#[derive(Debug)]
pub struct AwsCredentials {
    /// The access key id, its secret and the session token, as a credential's parts.
    pub credential: crate::crypto::Credential,
    /// When they expire.
    pub expiration: k8s_openapi::jiff::Timestamp,
}

/// Reads STS's `AssumeRoleWithWebIdentity` answer (XML). An error answer's code is kept, never
/// its message.
pub fn read_sts_credentials(body: &[u8]) -> Result<AwsCredentials, GrantError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response {
        assume_role_with_web_identity_result: Option<Result_>,
        error: Option<StsError>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Result_ {
        credentials: Keys,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct StsError {
        code: Option<String>,
    }
    let text = std::str::from_utf8(body).map_err(|_| GrantError::BadAnswer("not text".into()))?;
    let answer: Response = quick_xml::de::from_str(text)
        .map_err(|_| GrantError::BadAnswer("not an STS answer".into()))?;
    if let Some(error) = answer.error {
        return Err(GrantError::BadAnswer(format!(
            "error {:?}",
            safe_code(error.code.as_deref().unwrap_or("unknown"))
        )));
    }
    let keys = answer
        .assume_role_with_web_identity_result
        .ok_or_else(|| GrantError::BadAnswer("no credentials".into()))?
        .credentials;
    keys.into_credentials()
}

/// Reads EKS Pod Identity's (the container credentials endpoint's) JSON answer.
pub fn read_container_credentials(body: &[u8]) -> Result<AwsCredentials, GrantError> {
    let keys: Keys = serde_json::from_slice(body)
        .map_err(|_| GrantError::BadAnswer("not a credentials object".into()))?;
    keys.into_credentials()
}

/// The fields STS and the container credentials endpoint share (the latter names the session
/// token `Token`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Keys {
    access_key_id: Zeroizing<String>,
    secret_access_key: Zeroizing<String>,
    #[serde(alias = "Token")]
    session_token: Zeroizing<String>,
    expiration: String,
}

impl Keys {
    fn into_credentials(self) -> Result<AwsCredentials, GrantError> {
        use crate::formats::auth::{ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN};
        let expiration = self
            .expiration
            .trim()
            .parse()
            .map_err(|_| GrantError::BadAnswer("an Expiration that is no time".into()))?;
        let bytes = |value: Zeroizing<String>| Zeroizing::new(value.as_bytes().to_vec());
        let credential = crate::crypto::Credential::parts([
            (ACCESS_KEY_ID, bytes(self.access_key_id)),
            (SECRET_ACCESS_KEY, bytes(self.secret_access_key)),
            (SESSION_TOKEN, bytes(self.session_token)),
        ])
        .map_err(|_| GrantError::BadAnswer("credentials out of bounds".into()))?;
        Ok(AwsCredentials {
            credential,
            expiration,
        })
    }
}

/// An error code as it may be logged: letters, digits and `_` only, bounded.
fn safe_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// An access token and how long it lives.
pub struct Token {
    /// The bearer token.
    pub access_token: Zeroizing<String>,
    /// Seconds it is valid from when it was issued.
    pub expires_in: u64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Reads a token endpoint's answer (`{"access_token", "expires_in", "token_type"}`, the shape
/// Google's and Entra's endpoints share). An error answer's `error` code is kept (it names no
/// secret); its description is not, as it may echo what was sent.
pub fn read_token(body: &[u8]) -> Result<Token, GrantError> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<Zeroizing<String>>,
        expires_in: Option<serde_json::Value>,
        error: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| GrantError::BadAnswer("not a JSON object".into()))?;
    if let Some(error) = answer.error {
        return Err(GrantError::BadAnswer(format!(
            "error {:?}",
            safe_code(&error)
        )));
    }
    let access_token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| GrantError::BadAnswer("no access_token".into()))?;
    // Entra has sent `expires_in` as a string; Google as a number.
    let expires_in = match answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| GrantError::BadAnswer("no expires_in".into()))?;
    Ok(Token {
        access_token,
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/clouds/test-service-account-key.pem");

    fn account() -> ServiceAccount {
        let json = serde_json::json!({
            "type": "service_account", "project_id": "p", "private_key_id": "kid-1",
            "private_key": KEY, "client_email": "gw@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        ServiceAccount::from_json(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_assertion_is_a_jwt_the_accounts_public_key_verifies() {
        let account = account();
        let (url, body) = account.grant(GOOGLE_CLOUD_SCOPE, 1_700_000_000).unwrap();
        assert_eq!(url, "https://oauth2.googleapis.com/token");
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        let jwt = &form["assertion"];
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let (header, claims) = signed.split_once('.').unwrap();
        let decode = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        assert_eq!(
            decode(header),
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"})
        );
        let claims = decode(claims);
        assert_eq!(claims["iss"], "gw@p.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["scope"], GOOGLE_CLOUD_SCOPE);
        assert_eq!(claims["exp"], 1_700_003_600);
        let der = PrivatePkcs8KeyDer::from_pem_slice(KEY.as_bytes()).unwrap();
        let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            pair.public().as_ref(),
        );
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        public.verify(signed.as_bytes(), &signature).unwrap();
        let mut tampered = signed.as_bytes().to_vec();
        tampered[10] ^= 1;
        assert!(public.verify(&tampered, &signature).is_err());
    }

    #[test]
    fn what_is_not_a_service_account_key_is_refused_without_echoing_it() {
        for json in [
            r#"{"type":"authorized_user","client_secret":"s3cret"}"#,
            "not json s3cret",
            r#"{"type":"service_account","client_email":"a"}"#,
        ] {
            let error = ServiceAccount::from_json(json.as_bytes()).unwrap_err();
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
        let mut bad = account();
        bad.private_key =
            Zeroizing::new("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into());
        assert_eq!(
            bad.grant(GOOGLE_CLOUD_SCOPE, 0).unwrap_err(),
            GrantError::BadPrivateKey
        );
        assert!(!format!("{:?}", account()).contains("PRIVATE"));
    }

    #[test]
    fn aws_temporary_credentials_from_sts_and_the_pod_identity_agent() {
        let sts = br#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:dgidgi-system:dgidgi</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>FwoGZX-session</SessionToken>
      <SecretAccessKey>wJalr-secret</SecretAccessKey>
      <Expiration>2026-12-07T13:34:41Z</Expiration>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
    </Credentials>
    <AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn><AssumedRoleId>A:s</AssumedRoleId></AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;
        let read = read_sts_credentials(sts).unwrap();
        assert_eq!(
            read.credential.part("accessKeyId"),
            Some(b"ASIAEXAMPLE".as_slice())
        );
        assert_eq!(
            read.credential.part("secretAccessKey"),
            Some(b"wJalr-secret".as_slice())
        );
        assert_eq!(
            read.credential.part("sessionToken"),
            Some(b"FwoGZX-session".as_slice())
        );
        assert_eq!(read.expiration.to_string(), "2026-12-07T13:34:41Z");
        let refused = br#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>token eyJsecret is bad</Message></Error></ErrorResponse>"#;
        let error = read_sts_credentials(refused).unwrap_err();
        assert_eq!(
            error,
            GrantError::BadAnswer("error \"InvalidIdentityToken\"".into())
        );
        let agent = br#"{"AccessKeyId":"ASIAPOD","SecretAccessKey":"pod-secret","Token":"pod-token","AccountId":"1","Expiration":"2026-12-07T14:00:00Z"}"#;
        let read = read_container_credentials(agent).unwrap();
        assert_eq!(
            read.credential.part("sessionToken"),
            Some(b"pod-token".as_slice())
        );
        let body = sts_web_identity_grant("arn:aws:iam::1:role/r", "dgidgi", "eyJ.web\n");
        assert!(
            body.contains("Action=AssumeRoleWithWebIdentity")
                && body.ends_with("WebIdentityToken=eyJ.web&DurationSeconds=3600"),
            "{}",
            body.as_str()
        );
        let (url, body) = entra_federated_grant("https://login.example", "t", "c", "eyJ.fed\n");
        assert_eq!(url, "https://login.example/t/oauth2/v2.0/token");
        assert!(
            body.contains("client_assertion=eyJ.fed&"),
            "{}",
            body.as_str()
        );
    }

    #[test]
    fn token_answers_and_errors() {
        let token =
            read_token(br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#)
                .unwrap();
        assert_eq!(token.access_token.as_str(), "ya29.x");
        assert_eq!(token.expires_in, 3599);
        let entra = read_token(br#"{"access_token":"eyJ","expires_in":"3600"}"#).unwrap();
        assert_eq!(entra.expires_in, 3600);
        let error = read_token(
            br#"{"error":"invalid_client","error_description":"secret abc123 is wrong"}"#,
        )
        .unwrap_err();
        assert_eq!(
            error,
            GrantError::BadAnswer("error \"invalid_client\"".into())
        );
        assert!(read_token(br#"{"access_token":""}"#).is_err());
        let (url, body) = entra_grant("https://login.example/", "tenant-1", "app", "se&cret");
        assert_eq!(url, "https://login.example/tenant-1/oauth2/v2.0/token");
        assert!(body.contains("client_secret=se%26cret"));
        assert!(body.contains("scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"));
    }
}
