//! The clouds in front of the fake's native formats, as their public references describe them,
//! each checking the auth it takes before the request reaches the native handler:
//!
//! - **Azure OpenAI**: the v1 API (`/openai/v1/…`, the deployment in the body's `model`) and
//!   the deployment API (`/openai/deployments/{deployment}/…?api-version=…`, a version it
//!   knows); the key in `api-key` (never beside an `Authorization`), or an Entra token the
//!   fake's own Entra endpoint issued. Every stream starts with Azure's prompt-filter chunk
//!   (no choices); a prompt containing [`AZURE_FILTERED_PROMPT`] is refused as Azure's content
//!   filter refuses it (400 `content_filter`), and one containing [`AZURE_FILTERED_ANSWER`] is
//!   answered with `finish_reason: content_filter`.
//! - **Vertex AI**: `/v1/projects/{project}/locations/{region}/publishers/google/models/…`
//!   (Gemini's methods; every content has a role, as Vertex requires) and
//!   `…/publishers/anthropic/models/{model}:rawPredict` / `:streamRawPredict` (the body has
//!   `anthropic_version: vertex-2023-10-16` and no `model`); the bearer token one the fake's
//!   token endpoint issued.
//! - **Token endpoints**: Google's (`/token`: the JWT-bearer grant, whose assertion's RS256
//!   signature is verified with the test service account's public key, and its claims
//!   checked) and Entra's (`/{tenant}/oauth2/v2.0/token`: client credentials).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::fake_bedrock;
use super::fake_providers::{Fake, KEY, Reply, Seen};

/// The Google Cloud project the fake serves.
pub const PROJECT: &str = "fake-project";
/// The service account the fake's token endpoint accepts.
pub const SERVICE_ACCOUNT: &str = "gateway@fake-project.iam.gserviceaccount.com";
/// The test service account's private key (a key made for these tests only).
pub const SERVICE_ACCOUNT_KEY: &str =
    include_str!("../fixtures/clouds/test-service-account-key.pem");
/// The Entra tenant and application the fake accepts (the secret is [`KEY`]).
pub const ENTRA_TENANT: &str = "fake-tenant";
pub const ENTRA_CLIENT: &str = "fake-client";
/// The pod's projected tokens the fake's identity endpoints accept: Azure Workload Identity's
/// federated token, IRSA's web identity token, EKS Pod Identity's authorization token.
pub const FEDERATED_TOKEN: &str = "eyJ.federated-service-account-token";
pub const WEB_IDENTITY_TOKEN: &str = "eyJ.web-identity-service-account-token";
pub const POD_IDENTITY_TOKEN: &str = "eks-pod-identity-agent-token";
/// The role IRSA assumes at the fake's STS.
pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/dgidgi-gateway";

/// Azure's deployments at the fake.
pub const AZURE_DEPLOYMENTS: &[&str] = &["prod-gpt", "prod-embed"];
/// Azure API versions the fake knows.
const AZURE_API_VERSIONS: &[&str] = &["2024-10-21", "2025-04-01-preview"];
/// A prompt Azure's content filter refuses.
pub const AZURE_FILTERED_PROMPT: &str = "FILTER-MY-PROMPT";
/// A prompt whose answer Azure's content filter cuts.
pub const AZURE_FILTERED_ANSWER: &str = "FILTER-MY-ANSWER";

/// A service account JSON key for the fake's token endpoint at `token_uri`.
pub fn service_account_json(token_uri: &str) -> String {
    json!({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "fake-key-1",
        "private_key": SERVICE_ACCOUNT_KEY, "client_email": SERVICE_ACCOUNT,
        "client_id": "1", "token_uri": token_uri,
    })
    .to_string()
}

/// What a cloud makes of a request.
pub enum Arrival {
    /// Not a cloud's path: the native handlers answer it as it is.
    Native(Seen),
    /// The cloud let it through, rewritten for the native handler; `then` post-processes
    /// the native reply the way the cloud changes it.
    Through(Seen, fn(Reply) -> Reply),
    /// The cloud answered itself.
    Answered(Reply),
}

/// Routes a request through the cloud its path names.
pub fn arrive(seen: Seen, fake: &Fake) -> Arrival {
    if seen.path == "/token" {
        return Arrival::Answered(google_token(&seen, fake));
    }
    if seen.path.ends_with("/oauth2/v2.0/token") {
        return Arrival::Answered(entra_token(&seen, fake));
    }
    if let Some(reply) = workload_identity(&seen, fake) {
        return Arrival::Answered(reply);
    }
    // Groq's API lives under `/openai/v1/` too: Azure's requests are the ones with Azure's
    // credentials (an `api-key`, an Entra token) or a deployment path.
    let azure_credentials = seen.headers.contains_key("api-key")
        || seen
            .headers
            .get("authorization")
            .is_some_and(|a| a.starts_with("Bearer eyJ."));
    if seen.path.starts_with("/openai/deployments/")
        || (seen.path.starts_with("/openai/") && azure_credentials)
    {
        return azure(seen, fake);
    }
    if seen.path.starts_with("/v1/projects/") {
        return vertex(seen, fake);
    }
    if let Some(reply) = super::fake_bedrock::bedrock(&seen) {
        return Arrival::Answered(reply);
    }
    Arrival::Native(seen)
}

fn token_issued(token: &str, prefix: &str, fake: &Fake) -> bool {
    token
        .strip_prefix(prefix)
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n < fake.tokens_issued.load(Ordering::SeqCst))
}

fn issue(prefix: &str, fake: &Fake) -> Reply {
    let n = fake.tokens_issued.fetch_add(1, Ordering::SeqCst);
    Reply::Json(
        200,
        json!({"access_token": format!("{prefix}{n}"), "expires_in": 3599, "token_type": "Bearer"}),
    )
}

fn form(seen: &Seen) -> HashMap<String, String> {
    url::form_urlencoded::parse(&seen.raw)
        .into_owned()
        .collect()
}

fn oauth_error(status: u16, error: &str) -> Reply {
    Reply::Json(
        status,
        json!({"error": error, "error_description": "refused by the fake"}),
    )
}

/// Google's token endpoint: a JWT-bearer grant signed by the test service account.
fn google_token(seen: &Seen, fake: &Fake) -> Reply {
    let form = form(seen);
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(400, "unsupported_grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(400, "invalid_request");
    };
    let Some((signed, signature)) = assertion.rsplit_once('.') else {
        return oauth_error(400, "invalid_grant");
    };
    let Some((header, claims)) = signed.split_once('.') else {
        return oauth_error(400, "invalid_grant");
    };
    let decode = |part: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (Some(header), Some(claims), Ok(signature)) = (
        decode(header),
        decode(claims),
        URL_SAFE_NO_PAD.decode(signature),
    ) else {
        return oauth_error(400, "invalid_grant");
    };
    if header["alg"] != "RS256" || !verify_rs256(signed.as_bytes(), &signature) {
        return oauth_error(400, "invalid_grant");
    }
    let host = seen.headers.get("host").cloned().unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap_or(0),
        claims["exp"].as_u64().unwrap_or(0),
    );
    let valid = claims["iss"] == SERVICE_ACCOUNT
        && claims["aud"] == format!("http://{host}/token")
        && claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        && iat.abs_diff(now) < 300
        && exp > iat
        && exp - iat <= 3600;
    if !valid {
        return oauth_error(400, "invalid_grant");
    }
    issue("ya29.fake-", fake)
}

/// RS256 verification with the test service account's public key.
fn verify_rs256(message: &[u8], signature: &[u8]) -> bool {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject as _;
    let der = PrivatePkcs8KeyDer::from_pem_slice(SERVICE_ACCOUNT_KEY.as_bytes()).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public().as_ref(),
    )
    .verify(message, signature)
    .is_ok()
}

/// The workload identities' endpoints: AWS STS's `AssumeRoleWithWebIdentity` (at `/sts`),
/// EKS Pod Identity's agent (`/v1/credentials`), GKE's metadata server. Each hands out the
/// credentials the other fakes accept (the Bedrock fake's temporary access key, a token the
/// Vertex fake takes).
fn workload_identity(seen: &Seen, fake: &Fake) -> Option<Reply> {
    let expiration = || {
        let at = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        k8s_openapi::jiff::Timestamp::try_from(at)
            .unwrap()
            .to_string()
    };
    match seen.path.as_str() {
        "/sts" => {
            let form = form(seen);
            let get = |name: &str| form.get(name).map(String::as_str);
            if get("Action") != Some("AssumeRoleWithWebIdentity")
                || get("RoleArn") != Some(ROLE_ARN)
                || get("WebIdentityToken") != Some(WEB_IDENTITY_TOKEN)
                || seen.headers.contains_key("authorization")
            {
                let body = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>refused by the fake</Message></Error></ErrorResponse>";
                return Some(Reply::Raw {
                    status: 400,
                    content_type: "text/xml",
                    extra: "",
                    body: body.into(),
                });
            }
            let body = format!(
                "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
                fake_bedrock::ACCESS_KEY_ID,
                fake_bedrock::SECRET_ACCESS_KEY,
                fake_bedrock::SESSION_TOKEN,
                expiration()
            );
            fake.tokens_issued.fetch_add(1, Ordering::SeqCst);
            Some(Reply::Raw {
                status: 200,
                content_type: "text/xml",
                extra: "",
                body: body.into_bytes(),
            })
        }
        "/v1/credentials" => {
            if seen.headers.get("authorization").map(String::as_str) != Some(POD_IDENTITY_TOKEN) {
                return Some(Reply::Json(401, json!({"message": "invalid token"})));
            }
            fake.tokens_issued.fetch_add(1, Ordering::SeqCst);
            Some(Reply::Json(
                200,
                json!({
                    "AccessKeyId": fake_bedrock::ACCESS_KEY_ID,
                    "SecretAccessKey": fake_bedrock::SECRET_ACCESS_KEY,
                    "Token": fake_bedrock::SESSION_TOKEN,
                    "AccountId": "111122223333",
                    "Expiration": expiration(),
                }),
            ))
        }
        "/computeMetadata/v1/instance/service-accounts/default/token" => {
            if seen.headers.get("metadata-flavor").map(String::as_str) != Some("Google") {
                return Some(Reply::Json(
                    403,
                    json!({"error": "Missing Metadata-Flavor:Google header"}),
                ));
            }
            Some(issue("ya29.fake-", fake))
        }
        _ => None,
    }
}

/// Entra's token endpoint: the client-credentials grant of the fake application.
fn entra_token(seen: &Seen, fake: &Fake) -> Reply {
    let form = form(seen);
    let get = |name: &str| form.get(name).map(String::as_str);
    if seen.path != format!("/{ENTRA_TENANT}/oauth2/v2.0/token") {
        return oauth_error(400, "invalid_tenant");
    }
    if get("grant_type") != Some("client_credentials")
        || get("scope") != Some("https://cognitiveservices.azure.com/.default")
    {
        return oauth_error(400, "invalid_request");
    }
    let secret = get("client_secret") == Some(KEY);
    // Azure Workload Identity: the pod's federated token as the client assertion.
    let federated = get("client_assertion_type")
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && get("client_assertion") == Some(FEDERATED_TOKEN);
    if get("client_id") != Some(ENTRA_CLIENT) || !(secret || federated) {
        return oauth_error(401, "invalid_client");
    }
    issue("eyJ.fake-", fake)
}

fn azure_error(status: u16, code: &str, message: &str) -> Arrival {
    Arrival::Answered(Reply::Json(
        status,
        json!({"error": {"code": code, "message": message}}),
    ))
}

/// Azure OpenAI in front of the OpenAI-format handlers.
fn azure(mut seen: Seen, fake: &Fake) -> Arrival {
    let api_key = seen.headers.remove("api-key");
    let authorization = seen.headers.remove("authorization");
    let authorized = match (api_key.as_deref(), authorization.as_deref()) {
        (Some(key), None) => key == KEY,
        (None, Some(bearer)) => bearer
            .strip_prefix("Bearer ")
            .is_some_and(|token| token_issued(token, "eyJ.fake-", fake)),
        _ => false,
    };
    if !authorized {
        return azure_error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint.",
        );
    }
    let (path, query) = seen
        .path
        .split_once('?')
        .map_or((seen.path.clone(), None), |(p, q)| {
            (p.to_owned(), Some(q.to_owned()))
        });
    let version = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned())
    });
    let (deployment, operation) = if let Some(operation) = path.strip_prefix("/openai/v1/") {
        if version.as_deref().is_some_and(|v| v != "preview") {
            return azure_error(400, "BadRequest", "API version not supported");
        }
        let deployment = seen.body["model"].as_str().unwrap_or_default().to_owned();
        (deployment, operation.to_owned())
    } else if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        if !version
            .as_deref()
            .is_some_and(|v| AZURE_API_VERSIONS.contains(&v))
        {
            return azure_error(404, "404", "Resource not found");
        }
        let Some((deployment, operation)) = rest.split_once('/') else {
            return azure_error(404, "404", "Resource not found");
        };
        (deployment.to_owned(), operation.to_owned())
    } else {
        return azure_error(404, "404", "Resource not found");
    };
    if !AZURE_DEPLOYMENTS.contains(&deployment.as_str()) {
        return azure_error(
            404,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist.",
        );
    }
    let prompt = seen.body["messages"].to_string();
    if prompt.contains(AZURE_FILTERED_PROMPT) {
        return Arrival::Answered(Reply::Json(
            400,
            json!({"error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
                "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                    "hate": {"filtered": false, "severity": "safe"},
                    "violence": {"filtered": true, "severity": "high"}}}}}),
        ));
    }
    if prompt.contains(AZURE_FILTERED_ANSWER) {
        return Arrival::Answered(filtered_answer(&seen));
    }
    seen.path = format!("/v1/{operation}");
    seen.body["model"] = Value::from(deployment);
    seen.headers
        .insert("authorization".into(), format!("Bearer {KEY}"));
    Arrival::Through(seen, prompt_filter_first)
}

/// An answer Azure's content filter cut short.
fn filtered_answer(seen: &Seen) -> Reply {
    let model = "gpt-4o-2024-11-20";
    if seen.body["stream"] == true {
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                        "content_filter_results": {"violence": {"filtered": finish.is_string(), "severity": "medium"}}}]})
            )
        };
        return prompt_filter_first(Reply::Stream {
            events: vec![
                chunk(json!({"role": "assistant", "content": "Part"}), Value::Null),
                chunk(json!({}), Value::from("content_filter")),
                "data: [DONE]\n\n".to_owned(),
            ],
            reset: false,
        });
    }
    Reply::Json(
        200,
        json!({"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": model,
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
            "choices": [{"index": 0, "finish_reason": "content_filter",
                "message": {"role": "assistant", "content": "Part"},
                "content_filter_results": {"violence": {"filtered": true, "severity": "medium"}}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}),
    )
}

/// Azure's streams open with a chunk of no choices carrying the prompt's filter results.
fn prompt_filter_first(reply: Reply) -> Reply {
    match reply {
        Reply::Stream { mut events, reset } => {
            let first = json!({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                    "hate": {"filtered": false, "severity": "safe"}}}]});
            events.insert(0, format!("data: {first}\n\n"));
            Reply::Stream { events, reset }
        }
        other => other,
    }
}

fn vertex_error(status: u16, message: &str) -> Arrival {
    let code = match status {
        401 => "UNAUTHENTICATED",
        404 => "NOT_FOUND",
        _ => "INVALID_ARGUMENT",
    };
    Arrival::Answered(Reply::Json(
        status,
        json!({"error": {"code": status, "message": message, "status": code}}),
    ))
}

/// Vertex AI in front of the Gemini and Anthropic handlers.
fn vertex(mut seen: Seen, fake: &Fake) -> Arrival {
    let bearer = seen.headers.remove("authorization");
    if !bearer
        .as_deref()
        .and_then(|b| b.strip_prefix("Bearer "))
        .is_some_and(|token| token_issued(token, "ya29.fake-", fake))
    {
        return vertex_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    }
    if seen.headers.contains_key("x-goog-api-key") || seen.path.contains("key=") {
        return vertex_error(400, "API keys are not supported by this API.");
    }
    // /v1/projects/{project}/locations/{region}/publishers/{publisher}/models/{model}:{method}
    let segments: Vec<&str> = seen.path.trim_start_matches('/').splitn(9, '/').collect();
    let [
        "v1",
        "projects",
        project,
        "locations",
        _region,
        "publishers",
        publisher,
        "models",
        model_method,
    ] = segments[..]
    else {
        return vertex_error(404, "unknown path");
    };
    if project != PROJECT {
        return vertex_error(404, "project not found");
    }
    let (model, method) = model_method.split_once(':').unwrap_or((model_method, ""));
    let (model, method) = (model.to_owned(), method.to_owned());
    match publisher {
        "google" => {
            let roleless = seen.body["contents"]
                .as_array()
                .is_some_and(|c| c.iter().any(|content| content.get("role").is_none()));
            if roleless {
                return vertex_error(400, "Please use a valid role: user, model.");
            }
            seen.path = format!("/v1beta/models/{model}:{method}");
            seen.headers.insert("x-goog-api-key".into(), KEY.into());
        }
        "anthropic" => {
            if seen.body["anthropic_version"] != "vertex-2023-10-16" {
                return vertex_error(400, "anthropic_version: vertex-2023-10-16 is required");
            }
            let body = seen.body.as_object_mut().unwrap();
            body.remove("anthropic_version");
            if model == "count-tokens" && method == "rawPredict" {
                seen.path = "/v1/messages/count_tokens".into();
            } else {
                if body.contains_key("model") {
                    return vertex_error(400, "model: Extra inputs are not permitted");
                }
                if !matches!(method.as_str(), "rawPredict" | "streamRawPredict") {
                    return vertex_error(404, "unknown method");
                }
                body.insert("model".into(), Value::from(model));
                seen.path = "/v1/messages".into();
            }
            seen.raw = serde_json::to_vec(&seen.body).unwrap();
            seen.headers.insert("x-api-key".into(), KEY.into());
            seen.headers
                .entry("anthropic-version".into())
                .or_insert_with(|| "2023-06-01".into());
        }
        _ => return vertex_error(404, "publisher not found"),
    }
    Arrival::Through(seen, |reply| reply)
}

/// The cloud providers in front of the fake (YAML for the renderer, beside
/// [`super::fake_providers::providers_yaml`], whose `native-key` Secret they share):
/// `azure` (the v1 API: `azure-gpt` on deployment `prod-gpt`, `azure-embed` on `prod-embed`),
/// `azure-dated` (the deployment API at version 2024-10-21), `azure-entra` (an Entra
/// application's credentials; the gateway's Entra authority must be the fake), and `vertex`
/// (`gemini-vertex`, and `claude-vertex` in Anthropic's format, with a service account
/// whose token endpoint is the fake's), and Bedrock signed with an access key (`bedrock`),
/// temporary credentials (`bedrock-session`) or an API key (`bedrock-key`), each serving
/// `us.anthropic.claude-fake-v1:0` (an inference profile), `amazon.nova-fake-v1`, and
/// `anthropic.claude-bare-v1:0` (a bare Claude id, which Bedrock refuses).
pub fn clouds_yaml(upstream: std::net::SocketAddr) -> String {
    use base64::engine::general_purpose::STANDARD;
    let account = STANDARD.encode(service_account_json(&format!("http://{upstream}/token")));
    let provider = |name: &str, spec: &str| {
        format!(
            "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: {name}, namespace: dgidgi-system}}\nspec: {{baseUrl: \"http://{upstream}\", {spec}}}\n---\n"
        )
    };
    let azure_models = "models: [{name: azure-gpt}, {name: azure-embed, embedding: true}]";
    let deployments = "deployments: [{model: azure-gpt, deployment: prod-gpt}, {model: azure-embed, deployment: prod-embed}]";
    let bedrock_models = "models: [{name: \"us.anthropic.claude-fake-v1:0\"}, {name: amazon.nova-fake-v1}, {name: \"anthropic.claude-bare-v1:0\"}]";
    [
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: entra-app, namespace: dgidgi-system}}\nstringData: {{tenant: {ENTRA_TENANT}, client: {ENTRA_CLIENT}, secret: {KEY}}}\n---\n"
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: vertex-sa, namespace: dgidgi-system}}\ndata: {{service-account.json: {account}}}\n---\n"
        ),
        provider(
            "azure",
            &format!("type: azure-openai, credentialsRef: {{name: native-key}}, azure: {{{deployments}}}, {azure_models}"),
        ),
        provider(
            "azure-dated",
            &format!("type: azure-openai, credentialsRef: {{name: native-key}}, azure: {{apiVersion: \"2024-10-21\", {deployments}}}, {azure_models}"),
        ),
        provider(
            "azure-entra",
            &format!("type: azure-openai, credentialsRef: {{name: entra-app, parts: {{tenantId: tenant, clientId: client, clientSecret: secret}}}}, azure: {{{deployments}}}, {azure_models}"),
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: aws-key, namespace: dgidgi-system}}\nstringData: {{id: {}, secret: {}, token: {}}}\n---\n",
            fake_bedrock::ACCESS_KEY_ID,
            fake_bedrock::SECRET_ACCESS_KEY,
            fake_bedrock::SESSION_TOKEN
        ),
        provider(
            "bedrock",
            &format!("type: bedrock, region: {}, credentialsRef: {{name: aws-key, parts: {{accessKeyId: id, secretAccessKey: secret}}}}, {bedrock_models}", fake_bedrock::REGION),
        ),
        provider(
            "bedrock-session",
            &format!("type: bedrock, region: {}, credentialsRef: {{name: aws-key, parts: {{accessKeyId: id, secretAccessKey: secret, sessionToken: token}}}}, {bedrock_models}", fake_bedrock::REGION),
        ),
        provider(
            "bedrock-key",
            &format!("type: bedrock, region: {}, credentialsRef: {{name: native-key}}, {bedrock_models}", fake_bedrock::REGION),
        ),
        provider(
            "vertex",
            &format!("type: vertex-ai, region: us-east5, project: {PROJECT}, credentialsRef: {{name: vertex-sa, key: service-account.json}}, models: [{{name: gemini-vertex}}, {{name: claude-vertex}}]"),
        ),
    ]
    .concat()
}
