//! Golden files for format translation: request, response and stream fixtures per provider
//! under `tests/fixtures/formats/<provider>/` (shaped after the providers' API references), each
//! translated in one direction and compared with its snapshot in `.../<provider>/out/`. Stream
//! snapshots are the SSE the client receives, followed by an SSE comment with the usage read
//! and how the stream ended. After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test formats_golden` and review the diff.

use std::path::{Path, PathBuf};

use dgidgi::formats::stream::{Context, Flow, reframer};
use dgidgi::formats::{
    Format, FormatError, anthropic, cohere, gemini, responses, translate_response,
};
use dgidgi::sse;
use serde_json::{Map, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats")
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(path)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap();
    bytes.push(b'\n');
    bytes
}

/// Compares `actual` with `<provider>/out/<name>` (or writes it under UPDATE_GOLDEN).
fn check(provider: &str, name: &str, actual: &[u8]) {
    let path = fixtures().join(provider).join("out").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read(&path).unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert!(
        expected == actual,
        "{} differs; if intended, run UPDATE_GOLDEN=1 cargo test --test formats_golden\n--- got ---\n{}",
        path.display(),
        String::from_utf8_lossy(actual)
    );
}

/// Runs a stream fixture through a re-framer, in reads of 7 bytes (events split across reads).
fn reframe(path: &str, upstream: Format, client: Format, wants_usage: bool) -> Vec<u8> {
    reframe_bytes(&stream_fixture(path), upstream, client, wants_usage)
}

/// A stream fixture's bytes: its file, or for AWS's binary event-stream a JSON list of
/// `[event type, payload]` encoded as Bedrock frames it (`.events.json`).
fn stream_fixture(path: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixtures().join(path)).unwrap();
    if !path.ends_with(".events.json") {
        return bytes;
    }
    let events: Vec<(String, Value)> = serde_json::from_slice(&bytes).unwrap();
    events
        .iter()
        .flat_map(|(kind, payload)| {
            dgidgi::formats::bedrock::eventstream::encode_event(
                kind,
                payload.to_string().as_bytes(),
            )
        })
        .collect()
}

/// Runs stream bytes through the upstream's framing and a re-framer, in reads of 7 bytes.
fn reframe_bytes(bytes: &[u8], upstream: Format, client: Format, wants_usage: bool) -> Vec<u8> {
    let mut reframer = reframer(
        upstream,
        client,
        Context {
            model: "fixture-model".into(),
            created: 1_700_000_000,
            client_wants_usage: wants_usage,
            items: None,
        },
    );
    let mut parser = dgidgi::formats::dialect::dialect(upstream).framing();
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut flow = Flow::Continue;
    for read in bytes.chunks(7) {
        parser.feed(read, &mut events).unwrap();
        for event in events.drain(..) {
            if flow == Flow::Continue {
                flow = reframer.event(&event, &mut out);
            }
        }
    }
    parser.finish(&mut events).unwrap();
    for event in events.drain(..) {
        if flow == Flow::Continue {
            flow = reframer.event(&event, &mut out);
        }
    }
    if flow == Flow::Continue {
        flow = reframer.end(&mut out);
    }
    let usage = serde_json::to_string(&reframer.usage()).unwrap();
    out.extend_from_slice(format!(": usage {usage}\n: end {flow:?}\n").as_bytes());
    out
}

#[test]
fn openai_requests_translate_to_every_native_format() {
    let request = object(read_json("openai/request_tools.json"));
    let anthropic = anthropic::request_from_openai(&request, 4096).unwrap();
    check(
        "openai",
        "request_tools.to_anthropic.json",
        &pretty(&anthropic.into()),
    );
    let gemini = gemini::request_from_openai(&request).unwrap();
    check(
        "openai",
        "request_tools.to_gemini.json",
        &pretty(&gemini.into()),
    );
    let cohere = cohere::request_from_openai(&request).unwrap();
    check(
        "openai",
        "request_tools.to_cohere.json",
        &pretty(&cohere.into()),
    );
}

#[test]
fn anthropic_requests_translate_to_openai() {
    let request = object(read_json("anthropic/request_tools.json"));
    let openai = anthropic::request_to_openai(&request).unwrap();
    check(
        "anthropic",
        "request_tools.to_openai.json",
        &pretty(&openai.into()),
    );
}

/// The new front doors' requests, read into the canonical form and from there into what each
/// kind of target receives.
#[test]
fn responses_and_gemini_requests_translate_to_every_target() {
    type ToCanonical = fn(&Map<String, Value>) -> Result<Map<String, Value>, FormatError>;
    let fronts: [(&str, ToCanonical); 2] = [
        ("responses", responses::request_to_openai),
        ("gemini", gemini::request_to_openai),
    ];
    for (front, to_openai) in fronts {
        let request = object(read_json(&format!("{front}/request_tools.json")));
        let canonical = to_openai(&request).unwrap();
        check(
            front,
            "request_tools.to_openai.json",
            &pretty(&canonical.clone().into()),
        );
        let anthropic = anthropic::request_from_openai(&canonical, 4096).unwrap();
        check(
            front,
            "request_tools.to_anthropic.json",
            &pretty(&anthropic.into()),
        );
        let cohere = cohere::request_from_openai(&canonical).unwrap();
        check(
            front,
            "request_tools.to_cohere.json",
            &pretty(&cohere.into()),
        );
    }
    let request = object(read_json("responses/request_tools.json"));
    let canonical = responses::request_to_openai(&request).unwrap();
    let to_gemini = gemini::request_from_openai(&canonical).unwrap();
    check(
        "responses",
        "request_tools.to_gemini.json",
        &pretty(&to_gemini.into()),
    );
}

#[test]
fn responses_translate_in_every_direction() {
    let cases = [
        (
            "openai",
            "response_tools",
            Format::OpenAi,
            Format::Anthropic,
            "to_anthropic",
        ),
        (
            "anthropic",
            "response_tools",
            Format::Anthropic,
            Format::OpenAi,
            "to_openai",
        ),
        (
            "gemini",
            "response_tools",
            Format::Gemini,
            Format::OpenAi,
            "to_openai",
        ),
        (
            "gemini",
            "response_tools",
            Format::Gemini,
            Format::Anthropic,
            "to_anthropic",
        ),
        (
            "cohere",
            "response_tools",
            Format::Cohere,
            Format::OpenAi,
            "to_openai",
        ),
        (
            "openai",
            "response_tools",
            Format::OpenAi,
            Format::Responses,
            "to_responses",
        ),
        (
            "openai",
            "response_tools",
            Format::OpenAi,
            Format::Gemini,
            "to_gemini",
        ),
        (
            "anthropic",
            "response_tools",
            Format::Anthropic,
            Format::Responses,
            "to_responses",
        ),
        (
            "anthropic",
            "response_tools",
            Format::Anthropic,
            Format::Gemini,
            "to_gemini",
        ),
        (
            "gemini",
            "response_tools",
            Format::Gemini,
            Format::Responses,
            "to_responses",
        ),
        (
            "cohere",
            "response_tools",
            Format::Cohere,
            Format::Gemini,
            "to_gemini",
        ),
        (
            "responses",
            "response_tools",
            Format::Responses,
            Format::Responses,
            "as_sent",
        ),
        (
            "responses",
            "response_tools",
            Format::Responses,
            Format::OpenAi,
            "to_openai",
        ),
        (
            "responses",
            "response_tools",
            Format::Responses,
            Format::Anthropic,
            "to_anthropic",
        ),
    ];
    for (provider, name, upstream, client, direction) in cases {
        let body = std::fs::read(fixtures().join(format!("{provider}/{name}.json"))).unwrap();
        let (out, usage) =
            translate_response(upstream, client, &body, "fixture-model", 1_700_000_000).unwrap();
        // The finish reason a trace records, read straight from the answer, is the one the
        // canonical translation of it names.
        let (canonical, _) =
            translate_response(upstream, Format::OpenAi, &body, "fixture-model", 1).unwrap();
        let canonical: Value = serde_json::from_slice(&canonical).unwrap();
        assert_eq!(
            dgidgi::formats::finish_reason_of_answer(upstream, &body),
            dgidgi::usage::FinishReason::of_canonical(&canonical),
            "{provider}/{name}"
        );
        assert!(
            dgidgi::formats::finish_reason_of_answer(upstream, &body).is_some(),
            "{provider}/{name}"
        );
        let mut snapshot: Value = serde_json::from_slice(&out).unwrap();
        snapshot["//usage read"] = serde_json::to_value(usage).unwrap();
        check(
            provider,
            &format!("{name}.{direction}.json"),
            &pretty(&snapshot),
        );
    }
}

#[test]
fn streams_translate_chunk_by_chunk() {
    let cases = [
        (
            "anthropic",
            "stream_tools",
            Format::Anthropic,
            Format::OpenAi,
            "to_openai",
            true,
        ),
        (
            "anthropic",
            "stream_error",
            Format::Anthropic,
            Format::OpenAi,
            "to_openai",
            false,
        ),
        (
            "gemini",
            "stream_text",
            Format::Gemini,
            Format::OpenAi,
            "to_openai",
            true,
        ),
        (
            "gemini",
            "stream_text",
            Format::Gemini,
            Format::Anthropic,
            "to_anthropic",
            false,
        ),
        (
            "cohere",
            "stream_text",
            Format::Cohere,
            Format::OpenAi,
            "to_openai",
            false,
        ),
        (
            "openai",
            "stream_tools",
            Format::OpenAi,
            Format::Anthropic,
            "to_anthropic",
            false,
        ),
        (
            "openai",
            "stream_tools",
            Format::OpenAi,
            Format::OpenAi,
            "to_openai_without_usage",
            false,
        ),
        (
            "openai",
            "stream_tools",
            Format::OpenAi,
            Format::Responses,
            "to_responses",
            false,
        ),
        (
            "openai",
            "stream_tools",
            Format::OpenAi,
            Format::Gemini,
            "to_gemini",
            false,
        ),
        (
            "anthropic",
            "stream_tools",
            Format::Anthropic,
            Format::Responses,
            "to_responses",
            false,
        ),
        (
            "anthropic",
            "stream_tools",
            Format::Anthropic,
            Format::Gemini,
            "to_gemini",
            false,
        ),
        (
            "anthropic",
            "stream_error",
            Format::Anthropic,
            Format::Responses,
            "to_responses",
            false,
        ),
        (
            "gemini",
            "stream_text",
            Format::Gemini,
            Format::Responses,
            "to_responses",
            false,
        ),
        (
            "gemini",
            "stream_text",
            Format::Gemini,
            Format::Gemini,
            "relayed",
            false,
        ),
        (
            "cohere",
            "stream_text",
            Format::Cohere,
            Format::Responses,
            "to_responses",
            false,
        ),
        (
            "responses",
            "stream_tools",
            Format::Responses,
            Format::Responses,
            "relayed",
            false,
        ),
        // Reasoning streamed as a summary item, then the message.
        (
            "anthropic",
            "stream_thinking",
            Format::Anthropic,
            Format::Responses,
            "to_responses",
            false,
        ),
        (
            "responses",
            "stream_tools",
            Format::Responses,
            Format::OpenAi,
            "to_openai",
            true,
        ),
        (
            "responses",
            "stream_tools",
            Format::Responses,
            Format::Anthropic,
            "to_anthropic",
            false,
        ),
    ];
    for (provider, name, upstream, client, direction, wants_usage) in cases {
        let out = reframe(
            &format!("{provider}/{name}.sse"),
            upstream,
            client,
            wants_usage,
        );
        check(provider, &format!("{name}.{direction}.sse"), &out);
    }
}

#[test]
fn an_anthropic_stream_passes_through_byte_for_byte_when_the_client_speaks_anthropic() {
    let input = std::fs::read(fixtures().join("anthropic/stream_tools.sse")).unwrap();
    let out = reframe(
        "anthropic/stream_tools.sse",
        Format::Anthropic,
        Format::Anthropic,
        false,
    );
    let text = String::from_utf8(out).unwrap();
    let (body, trailer) = text.split_at(text.find(": usage").unwrap());
    // Re-framed event by event: the same events, in the canonical `event:`/`data:` framing.
    assert_eq!(
        sse::parse_all(body.as_bytes()).unwrap(),
        sse::parse_all(&input).unwrap()
    );
    assert!(
        trailer.contains("\"input_tokens\":572") && trailer.contains("\"output_tokens\":89"),
        "{trailer}"
    );
    assert!(trailer.contains("end Complete"));
}

/// Every format there is, in the order the matrix snapshots them.
const FORMATS: [Format; 6] = Format::ALL;

/// The fixture directory of a format's own fixtures.
fn directory(format: Format) -> &'static str {
    match format {
        Format::OpenAi => "openai",
        Format::Anthropic => "anthropic",
        Format::Gemini => "gemini",
        Format::Cohere => "cohere",
        Format::Responses => "responses",
        Format::Bedrock => "bedrock",
    }
}

/// A translation's snapshot: the JSON, or the error a client would be told.
fn outcome(result: Result<Value, FormatError>) -> Vec<u8> {
    match result {
        Ok(value) => pretty(&value),
        Err(error) => format!("error: {error}\n").into_bytes(),
    }
}

/// The golden matrix, through the dialect registry alone: every request fixture read into the
/// canonical form and written in every dialect; every whole answer and every stream fixture
/// translated for a client of every format (the same format included: the relay as sent).
/// Snapshots under `matrix/out/` (`<from>.to_<to>.<kind>`); a pair that cannot be expressed
/// snapshots its error.
#[test]
fn the_matrix_every_fixture_through_every_dialect() {
    use dgidgi::formats::dialect::{Target, dialect};
    let target = Target {
        model: "fixture-model",
        default_max_output_tokens: 4096,
    };
    let mut pairs = 0;
    for from in FORMATS {
        let dir = directory(from);
        if fixtures().join(dir).join("request_tools.json").exists() {
            let request = object(read_json(&format!("{dir}/request_tools.json")));
            let canonical = match dialect(from).request_to_canonical(&request) {
                None => Ok(request.clone()),
                Some(result) => result,
            };
            for to in FORMATS {
                let written = canonical.clone().and_then(|canonical| {
                    dialect(to)
                        .request_from_canonical(&canonical, &target)
                        .map(Value::Object)
                });
                let name = format!("{dir}.to_{}.request.json", directory(to));
                check("matrix", &name, &outcome(written));
                pairs += 1;
            }
        }
        let answer = std::fs::read(fixtures().join(dir).join("response_tools.json")).unwrap();
        for to in FORMATS {
            let translated = translate_response(from, to, &answer, "fixture-model", 1_700_000_000)
                .and_then(|(out, usage)| {
                    let mut snapshot: Value = serde_json::from_slice(&out)
                        .map_err(|e| FormatError::Upstream(e.to_string()))?;
                    snapshot["//usage read"] = serde_json::to_value(usage).unwrap();
                    Ok(snapshot)
                });
            let name = format!("{dir}.to_{}.response.json", directory(to));
            check("matrix", &name, &outcome(translated));
            pairs += 1;
        }
        let stream = [
            "stream_tools.sse",
            "stream_text.sse",
            "stream_tools.events.json",
        ]
        .into_iter()
        .find(|name| fixtures().join(dir).join(name).exists())
        .unwrap_or_else(|| panic!("{dir} has no stream fixture"));
        for to in FORMATS {
            let out = reframe(&format!("{dir}/{stream}"), from, to, true);
            check(
                "matrix",
                &format!("{dir}.to_{}.stream.sse", directory(to)),
                &out,
            );
            pairs += 1;
        }
    }
    // Four front doors' requests, six answers and six streams, each to six formats.
    assert_eq!(pairs, 4 * 6 + 6 * 6 + 6 * 6);
}
