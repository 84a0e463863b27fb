//! A plain HTTP/1.1 client for the tests that talk to a gateway over its listeners.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Status, headers (lowercase names, in order) and body text of an answer.
pub type Answer = (u16, Vec<(String, String)>, String);

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `method path` with an optional bearer token and body; `None` if the connection failed.
pub async fn send(
    address: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<String>,
) -> Option<Answer> {
    let authorization = bearer.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = authorization
        .as_deref()
        .map(|value| ("authorization", value))
        .into_iter()
        .collect();
    send_with(address, method, path, &headers, body).await
}

/// `POST /v1/chat/completions` of `body` with `key`.
pub async fn post_chat(address: SocketAddr, key: &str, body: &serde_json::Value) -> Answer {
    send(
        address,
        "POST",
        "/v1/chat/completions",
        Some(key),
        Some(body.to_string()),
    )
    .await
    .expect("the gateway answers")
}

/// A chat completion for the built-in mock's `mock-fast` saying "hi", with `key`: its status
/// and body.
pub async fn chat_hi(address: SocketAddr, key: &str) -> (u16, String) {
    let body = serde_json::json!({"model": "mock-fast",
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, answer) = post_chat(address, key, &body).await;
    (status, answer)
}

/// Sends `method path` with the given headers (and `content-type: application/json` with a
/// body); `None` if the connection failed. A body that breaks mid-way reads as
/// `<body error: …>`, so a test can see what arrived before.
pub async fn send_with(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Option<Answer> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .ok()?;
    let response = client().request(request).await.ok()?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = match response.into_body().collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(error) => format!("<body error: {error}>"),
    };
    Some((status, headers, body))
}

/// A header's value.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
