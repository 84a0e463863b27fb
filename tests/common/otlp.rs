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
    /// Start and end, Unix nanoseconds.
    pub start_ns: u64,
    pub end_ns: u64,
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
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                });
            }
        }
    }
    out
}

/// The trace under the span `root` drawn as a waterfall (SVG): one row per span in tree order,
/// its bar on the root's time axis, and the attributes a reader looks for under it. What
/// docs/observability.md shows is drawn by this from a real request's spans.
pub fn waterfall_svg(spans: &[Received], root: &str) -> String {
    const SHOWN: &[&str] = &[
        "http.route",
        "http.response.status_code",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
        "dgidgi.tenant",
        "dgidgi.fallback_count",
        "dgidgi.cost_micro_usd",
        "server.address",
        "url.path",
        "error.type",
    ];
    const LABEL: f64 = 330.0;
    const BARS: f64 = 520.0;
    const LINE: f64 = 13.0;
    fn tree<'a>(
        spans: &'a [Received],
        id: &str,
        depth: usize,
        out: &mut Vec<(usize, &'a Received)>,
    ) {
        let Some(span) = spans.iter().find(|s| s.span_id == id) else {
            return;
        };
        out.push((depth, span));
        let mut children: Vec<&Received> = spans.iter().filter(|s| s.parent == id).collect();
        children.sort_by_key(|s| s.start_ns);
        for child in children {
            tree(spans, &child.span_id, depth + 1, out);
        }
    }
    /// A span's shown attributes, in lines of at most 110 characters.
    fn attribute_lines(span: &Received) -> Vec<String> {
        let mut lines = vec![String::new()];
        for name in SHOWN {
            let Some(value) = span.attributes.get(*name) else {
                continue;
            };
            let item = format!("{name}={value}");
            let last = lines.last_mut().unwrap();
            if last.is_empty() {
                *last = item;
            } else if last.len() + 1 + item.len() > 110 {
                lines.push(item);
            } else {
                last.push(' ');
                last.push_str(&item);
            }
        }
        lines
    }
    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
    let mut ordered = Vec::new();
    tree(spans, root, 0, &mut ordered);
    let rows: Vec<(usize, &Received, Vec<String>)> = ordered
        .into_iter()
        .map(|(depth, span)| (depth, span, attribute_lines(span)))
        .collect();
    let start = rows.iter().map(|(_, s, _)| s.start_ns).min().unwrap_or(0);
    let end = rows
        .iter()
        .map(|(_, s, _)| s.end_ns)
        .max()
        .unwrap_or(start + 1);
    let total = (end - start).max(1) as f64;
    let height = 40.0
        + rows
            .iter()
            .map(|(_, _, lines)| 20.0 + LINE * lines.len() as f64 + 8.0)
            .sum::<f64>();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"8\" y=\"18\" font-weight=\"bold\">trace {} ({:.1} ms)</text>\n",
        LABEL + BARS + 20.0,
        rows.first().map_or("", |(_, s, _)| s.trace_id.as_str()),
        total / 1e6
    );
    let mut y = 30.0;
    for (depth, span, lines) in &rows {
        let indent = 8.0 + 14.0 * *depth as f64;
        let kind = match span.kind {
            2 => "SERVER",
            3 => "CLIENT",
            _ => "INTERNAL",
        };
        let x = LABEL + BARS * (span.start_ns - start) as f64 / total;
        let width = (BARS * (span.end_ns - span.start_ns) as f64 / total).max(2.0);
        let fill = match (span.error, span.kind) {
            (true, _) => "#d9534f",
            (false, 2) => "#5b8def",
            _ => "#49a078",
        };
        svg += &format!(
            "<text x=\"{indent}\" y=\"{}\">{} <tspan fill=\"#888\">{kind} {:.1} ms</tspan></text>\n<rect x=\"{x:.1}\" y=\"{}\" width=\"{width:.1}\" height=\"14\" rx=\"2\" fill=\"{fill}\"/>\n",
            y + 12.0,
            escape(&span.name),
            (span.end_ns - span.start_ns) as f64 / 1e6,
            y + 1.0,
        );
        for (line, text) in lines.iter().enumerate() {
            svg += &format!(
                "<text x=\"{indent}\" y=\"{}\" font-size=\"10\" fill=\"#555\">{}</text>\n",
                y + 30.0 + LINE * line as f64,
                escape(text)
            );
        }
        y += 20.0 + LINE * lines.len() as f64 + 8.0;
    }
    svg + "</svg>\n"
}
