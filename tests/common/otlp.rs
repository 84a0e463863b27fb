//! A local OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf decoded with the
//! `opentelemetry-proto` definitions) that keeps every span it is sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use tokio::io::AsyncWriteExt as _;

/// One span as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub name: String,
    pub kind: i32,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub attributes: HashMap<String, String>,
    pub error: bool,
    /// Its events' names.
    pub events: Vec<String>,
}

pub type Spans = Arc<Mutex<Vec<Received>>>;

/// The OTLP/HTTP receiver: `POST /v1/traces`, protobuf.
pub async fn receiver() -> (SocketAddr, Spans) {
    gated_receiver(None).await
}

/// A receiver that holds every export unanswered until `gate` opens (a collector that hangs),
/// then takes them all.
pub async fn gated_receiver(
    gate: Option<tokio::sync::watch::Receiver<bool>>,
) -> (SocketAddr, Spans) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let spans: Spans = Arc::default();
    let shared = spans.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let spans = shared.clone();
            let mut gate = gate.clone();
            tokio::spawn(async move {
                while let Some(seen) = super::fake_providers::read_request(&mut stream).await {
                    if let Some(gate) = &mut gate {
                        let _ = gate.wait_for(|open| *open).await;
                    }
                    assert_eq!(seen.path, "/v1/traces");
                    assert_eq!(seen.headers["content-type"], "application/x-protobuf");
                    let request = ExportTraceServiceRequest::decode(seen.raw.as_slice()).unwrap();
                    let received = decoded(request);
                    spans.lock().unwrap().extend(received);
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, spans)
}

/// The spans of an export request.
fn decoded(request: ExportTraceServiceRequest) -> Vec<Received> {
    let mut out = Vec::new();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let value = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                            Some(AnyValue::StringValue(s)) => s,
                            Some(AnyValue::IntValue(i)) => i.to_string(),
                            Some(AnyValue::BoolValue(b)) => b.to_string(),
                            Some(AnyValue::DoubleValue(d)) => d.to_string(),
                            // A string array, written as JSON: `["stop"]`.
                            Some(AnyValue::ArrayValue(array)) => {
                                let strings: Vec<String> = array
                                    .values
                                    .iter()
                                    .map(|v| match &v.value {
                                        Some(AnyValue::StringValue(s)) => s.clone(),
                                        other => format!("{other:?}"),
                                    })
                                    .collect();
                                serde_json::to_string(&strings).unwrap()
                            }
                            other => format!("{other:?}"),
                        };
                        (kv.key.clone(), value)
                    })
                    .collect();
                out.push(Received {
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent: hex::encode(span.parent_span_id),
                    attributes,
                    error: span.status.is_some_and(|s| s.code == 2),
                    events: span.events.iter().map(|e| e.name.clone()).collect(),
                });
            }
        }
    }
    out
}
