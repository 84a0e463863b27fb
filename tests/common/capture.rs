//! A recording proxy between a real client and the gateway: it keeps each request exactly as
//! the client sent it (headers and body) and relays the gateway's answer as it streams, so a
//! test can compare what the client sent with what reached the upstream fake.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// One request as the client sent it.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Lower-cased headers.
    pub headers: HashMap<String, String>,
    /// The body, parsed (`Null` when it is not JSON).
    pub body: Value,
}

/// Everything the proxy relayed, in order.
pub type Sends = Arc<Mutex<Vec<Sent>>>;

/// Starts a proxy to `target`; returns its address and what it records.
pub async fn start(target: SocketAddr) -> (SocketAddr, Sends) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let sends: Sends = Arc::default();
    let record = sends.clone();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (record, client) = (record.clone(), client.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (record, client) = (record.clone(), client.clone());
                    async move { relay(request, target, &record, &client).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, sends)
}

async fn relay(
    request: Request<Incoming>,
    target: SocketAddr,
    record: &Sends,
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
    let (mut parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    record.lock().unwrap().push(Sent {
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    parts.uri = format!("http://{target}{path}").parse().unwrap();
    client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
}
