//! AWS Bedrock's Converse and ConverseStream APIs, as the API reference describes them:
//! `POST /model/{modelId}/converse` and `/converse-stream` (the model id percent-encoded in the
//! path), answers in Converse's shape, streams in AWS's binary event-stream framing, errors as
//! `{"message"}` with `x-amzn-ErrorType`.
//!
//! It checks the auth as AWS does: a SigV4 signature recomputed here, independently of the
//! gateway's signer (the canonical request built by hand, HMAC-SHA256 by `ring`), with the
//! fake's access key, its session token when the credentials are temporary, the region and the
//! service; or a Bedrock API key as a bearer token. A Claude 4 model called by its bare id
//! (without an inference profile) is refused, as Bedrock refuses it.

use std::collections::HashMap;

use dgidgi::formats::bedrock::eventstream::{encode_event, encode_exception};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::fake_providers::{KEY, Reply, Seen};

/// The fake's AWS access key.
pub const ACCESS_KEY_ID: &str = "AKIAFAKEBEDROCK00001";
pub const SECRET_ACCESS_KEY: &str = "fake/bedrock+secret/key/0000000000000000";
/// The session token of the fake's temporary credentials.
pub const SESSION_TOKEN: &str = "FwoGZXIvYXdzEFAKE//session+token==";
/// A prompt whose stream fails after its text (a `modelStreamErrorException`).
pub const FAIL_MID_STREAM: &str = "FAIL-MID-STREAM";
/// The region the fake serves.
pub const REGION: &str = "us-east-1";

/// Answers a request if its path is Bedrock's; `None` otherwise.
pub fn bedrock(seen: &Seen) -> Option<Reply> {
    let rest = seen.path.strip_prefix("/model/")?;
    let (model, operation) = rest.rsplit_once('/')?;
    let stream = match operation {
        "converse" => false,
        "converse-stream" => true,
        _ => return Some(error(404, "UnknownOperationException", "unknown operation")),
    };
    if let Err(message) = authorized(seen) {
        return Some(error(403, "UnrecognizedClientException", &message));
    }
    let model = percent_encoding::percent_decode_str(model)
        .decode_utf8_lossy()
        .into_owned();
    if model.starts_with("anthropic.claude") {
        return Some(error(
            400,
            "ValidationException",
            &format!(
                "Invocation of model ID {model} with on-demand throughput isn't supported. Retry your request with the ID or ARN of an inference profile that contains this model."
            ),
        ));
    }
    Some(
        converse(seen, stream)
            .unwrap_or_else(|message| error(400, "ValidationException", &message)),
    )
}

fn error(status: u16, kind: &'static str, message: &str) -> Reply {
    let extra: &'static str = Box::leak(
        format!(
            "x-amzn-errortype: {kind}:http://internal.amazon.com/coral/com.amazon.bedrock/\r\n"
        )
        .into_boxed_str(),
    );
    Reply::Raw {
        status,
        content_type: "application/json",
        extra,
        body: json!({"message": message}).to_string().into_bytes(),
    }
}

/// Whether the request is signed with the fake's access key (SigV4) or carries its Bedrock
/// API key; `Err` says why not.
fn authorized(seen: &Seen) -> Result<(), String> {
    let authorization = seen
        .headers
        .get("authorization")
        .ok_or("Missing Authentication Token")?;
    if let Some(key) = authorization.strip_prefix("Bearer ") {
        return (key == KEY)
            .then_some(())
            .ok_or_else(|| "The API key is not valid".to_owned());
    }
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("unknown authorization scheme")?;
    let fields: HashMap<&str, &str> = fields
        .split(", ")
        .filter_map(|field| field.split_once('='))
        .collect();
    let credential: Vec<&str> = fields
        .get("Credential")
        .ok_or("no Credential")?
        .split('/')
        .collect();
    let [key_id, day, region, service, "aws4_request"] = credential[..] else {
        return Err("malformed Credential".into());
    };
    if key_id != ACCESS_KEY_ID {
        return Err("The security token included in the request is invalid.".into());
    }
    if region != REGION || service != "bedrock" {
        return Err(format!(
            "Credential should be scoped to a valid region and service ({region}/{service})"
        ));
    }
    let amz_date = seen.headers.get("x-amz-date").ok_or("no x-amz-date")?;
    if !amz_date.starts_with(day) {
        return Err("the Credential's date is not the request's".into());
    }
    let signed_headers = *fields.get("SignedHeaders").ok_or("no SignedHeaders")?;
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["host", "x-amz-date"] {
        if !names.contains(&required) {
            return Err(format!("{required} must be signed"));
        }
    }
    match seen.headers.get("x-amz-security-token") {
        Some(token) if token != SESSION_TOKEN => return Err("invalid session token".into()),
        Some(_) if !names.contains(&"x-amz-security-token") => {
            return Err("the session token must be signed".into());
        }
        _ => {}
    }
    let (path, query) = seen.path.split_once('?').unwrap_or((&seen.path, ""));
    if !query.is_empty() {
        return Err("Bedrock takes no query".into());
    }
    // Every AWS service but S3 encodes the (already encoded) path once more.
    let canonical_uri = path
        .split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/");
    let mut canonical_headers = String::new();
    for name in &names {
        let value = seen
            .headers
            .get(*name)
            .ok_or_else(|| format!("signed header {name} is missing"))?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical = format!(
        "POST\n{canonical_uri}\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(&seen.raw))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{day}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let hmac = |key: &[u8], data: &str| -> Vec<u8> {
        ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            data.as_bytes(),
        )
        .as_ref()
        .to_vec()
    };
    let mut key = hmac(format!("AWS4{SECRET_ACCESS_KEY}").as_bytes(), day);
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part);
    }
    let expected = hex::encode(hmac(&key, &string_to_sign));
    if fields.get("Signature") != Some(&expected.as_str()) {
        return Err(
            "The request signature we calculated does not match the signature you provided.".into(),
        );
    }
    Ok(())
}

/// RFC 3986 encoding of one path segment (unreserved characters kept).
fn uri_encode(segment: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SET).to_string()
}

/// The text of a Converse message's blocks (tool results' included).
fn text_of(message: &Value) -> String {
    message["content"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|block| {
            let results = block["toolResult"]["content"]
                .as_array()
                .into_iter()
                .flatten();
            block["text"]
                .as_str()
                .into_iter()
                .chain(results.filter_map(|r| r["text"].as_str()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Answers a Converse request: tool calls when it offers tools and has no result yet (the
/// first tool, for Paris and Berlin; a forced tool once, with input of its schema), else an
/// echo of the last user text.
fn converse(seen: &Seen, stream: bool) -> Result<Reply, String> {
    let body = &seen.body;
    if body.get("model").is_some() {
        return Err("Malformed input request: extraneous key [model] is not permitted".into());
    }
    let max_tokens = body["inferenceConfig"]["maxTokens"].as_u64().ok_or(
        "inferenceConfig.maxTokens is required by this fake (the gateway bounds every answer)",
    )?;
    if max_tokens == 0 {
        return Err("maxTokens must be positive".into());
    }
    let messages = body["messages"].as_array().ok_or("messages is required")?;
    let alternates = messages
        .iter()
        .enumerate()
        .all(|(i, m)| m["role"] == if i % 2 == 0 { "user" } else { "assistant" });
    if messages.is_empty() || !alternates {
        return Err("A conversation must start with a user message and alternate user and assistant messages.".into());
    }
    let last = messages.last().unwrap_or(&Value::Null);
    let answered = last["content"]
        .as_array()
        .is_some_and(|b| b.iter().any(|b| b.get("toolResult").is_some()));
    let tools = body["toolConfig"]["tools"].as_array();
    let forced = body["toolConfig"]["toolChoice"]["tool"]["name"]
        .as_str()
        .and_then(|name| {
            let tool = tools?.iter().find(|t| t["toolSpec"]["name"] == name)?;
            Some((
                name.to_owned(),
                super::fake_providers::example_of(&tool["toolSpec"]["inputSchema"]["json"]),
            ))
        });
    let calls: Vec<(String, String, Value)> =
        match (tools.and_then(|t| t.first()), answered, forced) {
            (_, false, Some((name, input))) => vec![("tooluse_F".into(), name, input)],
            (Some(tool), false, None) => {
                let name = tool["toolSpec"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                vec![
                    ("tooluse_A".into(), name.clone(), json!({"city": "Paris"})),
                    ("tooluse_B".into(), name, json!({"city": "Berlin"})),
                ]
            }
            _ => Vec::new(),
        };
    let text = if calls.is_empty() {
        format!("echo: {}", text_of(last))
    } else {
        String::new()
    };
    let stop = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    let usage = json!({"inputTokens": 9, "outputTokens": 4, "totalTokens": 13});
    if !stream {
        let mut content = Vec::new();
        if !text.is_empty() {
            content.push(json!({"text": text}));
        }
        content.extend(calls.iter().map(
            |(id, name, input)| json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}),
        ));
        return Ok(Reply::Json(
            200,
            json!({"output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 12}}),
        ));
    }
    let mut frames = Vec::new();
    let mut event = |kind: &str, payload: Value| {
        frames.extend(encode_event(kind, payload.to_string().as_bytes()))
    };
    event(
        "messageStart",
        json!({"role": "assistant", "p": "abcdefgh"}),
    );
    let mut index = 0;
    if !text.is_empty() {
        let (head, tail) = text.split_at(text.len() / 2);
        for piece in [head, tail] {
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": piece}, "p": "abc"}),
            );
        }
        event("contentBlockStop", json!({"contentBlockIndex": 0}));
        index = 1;
    }
    for (id, name, input) in &calls {
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
        );
        let input = input.to_string();
        let (head, tail) = input.split_at(input.len() / 2);
        for piece in [head, tail] {
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}),
            );
        }
        event("contentBlockStop", json!({"contentBlockIndex": index}));
        index += 1;
    }
    if text_of(last).contains(FAIL_MID_STREAM) {
        frames.extend(encode_exception(
            "modelStreamErrorException",
            "The model failed mid-stream",
        ));
    } else {
        event("messageStop", json!({"stopReason": stop}));
        event(
            "metadata",
            json!({"usage": usage, "metrics": {"latencyMs": 12}}),
        );
    }
    Ok(Reply::Raw {
        status: 200,
        content_type: "application/vnd.amazon.eventstream",
        extra: "",
        body: frames,
    })
}
