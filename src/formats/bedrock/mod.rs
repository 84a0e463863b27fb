//! AWS Bedrock's Converse API: requests and whole answers to and from the canonical OpenAI
//! form, its ConverseStream answers (AWS's binary event-stream framing, see [`eventstream`])
//! decoded into canonical chunks and encoded from them, and its usage (cache reads and writes).
//!
//! Bedrock is only ever an upstream: no client speaks Converse to the gateway. The directions
//! a front door would need (a Converse request read into canonical form, a canonical answer
//! or stream written as Converse) are implemented anyway because they are small, and they let
//! every fixture run through every dialect in the format tests.
//!
//! The model is not in a Converse body: it is a segment of the URL ([`converse_url`]).
//! The output limit lives one level down, at `inferenceConfig.maxTokens`, which
//! [`super::volume::OutputFields::within`] expresses, so the reservation reads it and a cap
//! writes it there like Gemini's `generationConfig.maxOutputTokens`.

use serde_json::{Map, Value, json};

use super::FormatError;
use super::dialect::{Dialect, PassThrough, Target};
use super::stream::{Context, Decoder, Encoder, Framing, Reframe};
use super::volume::OutputFields;
use crate::usage::Usage;

pub mod eventstream;
mod request;
mod response;
mod stream;

pub use request::*;
pub use response::*;
pub use stream::*;

/// Where a Converse request bounds its output: `inferenceConfig.maxTokens`.
const OUTPUT_FIELDS: OutputFields = OutputFields {
    within: &["inferenceConfig"],
    limits: &["maxTokens"],
    choices: &[],
    unbounded: &[],
};

/// The path of a Converse call when the provider's chat path is not a template.
const DEFAULT_PATH: &str = "/model/{model}/converse";

/// Reads a Converse `usage`. Its `inputTokens` excludes the prompt tokens read from or written
/// to the cache (`totalTokens` is the sum of all four); the internal type counts every prompt
/// token, so the three are added, as for Anthropic.
pub fn usage_from_value(usage: &Value) -> Option<Usage> {
    let usage = usage.as_object()?;
    let number = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = number("cacheReadInputTokens");
    let created = number("cacheWriteInputTokens");
    Some(Usage {
        input_tokens: number("inputTokens") + cached + created,
        output_tokens: number("outputTokens"),
        cached_input_tokens: cached,
        cache_creation_input_tokens: created,
    })
}

/// The internal usage as a Converse `usage` object.
pub fn usage_value(usage: &Usage) -> Value {
    let cached = usage.cached_input_tokens + usage.cache_creation_input_tokens;
    json!({
        "inputTokens": usage.input_tokens.saturating_sub(cached),
        "outputTokens": usage.output_tokens,
        "totalTokens": usage.total_tokens(),
        "cacheReadInputTokens": usage.cached_input_tokens,
        "cacheWriteInputTokens": usage.cache_creation_input_tokens,
    })
}

/// The Converse URL of `model` under `base`. A chat `path` holding `{model}` (the catalog's
/// `/model/{model}/converse`) is the template; any other path is ignored for the Converse
/// one, since Bedrock's runtime API has exactly this shape. A stream goes to the path's
/// `-stream` sibling (`converse-stream`).
pub fn converse_url(base: &str, path: &str, model: &str, stream: bool) -> String {
    let template = if path.contains("{model}") {
        path
    } else {
        DEFAULT_PATH
    };
    // The `:` of a model id, the `/` of an inference-profile ARN: percent-encoded, so the path
    // the request goes to is the path it is signed for.
    let model = super::path_segment(model);
    let path = template.replace("{model}", &model);
    let suffix = if stream && !path.ends_with("-stream") {
        "-stream"
    } else {
        ""
    };
    format!("{}{path}{suffix}", base.trim_end_matches('/'))
}

/// Bedrock's error body, `{"message": ...}` (its type travels in `x-amzn-ErrorType`).
pub fn error_body(message: &str) -> String {
    json!({ "message": message }).to_string()
}

// ---------------------------------------------------------------------------------------------
// The dialect

/// AWS Bedrock's Converse API.
pub struct Converse;

impl Dialect for Converse {
    fn format(&self) -> super::Format {
        super::Format::Bedrock
    }

    fn output_fields(&self) -> &'static OutputFields {
        &OUTPUT_FIELDS
    }

    /// The model is left out: it goes in the URL.
    fn request_from_canonical(
        &self,
        canonical: &Map<String, Value>,
        target: &Target<'_>,
    ) -> Result<Map<String, Value>, FormatError> {
        request_from_openai(canonical, target.default_max_output_tokens)
    }

    fn chat_url(&self, base: &str, path: &str, model: &str, stream: bool) -> Option<String> {
        Some(converse_url(base, path, model, stream))
    }

    fn request_to_canonical(
        &self,
        request: &Map<String, Value>,
    ) -> Option<Result<Map<String, Value>, FormatError>> {
        Some(request_to_openai(request))
    }

    fn usage_of_answer(&self, body: &[u8]) -> Option<Usage> {
        super::dialect::usage_member(body, super::dialect::UsageMember::Usage, usage_from_value)
    }

    fn response_to_canonical(
        &self,
        answer: Value,
        model: &str,
        created: u64,
    ) -> Result<Value, FormatError> {
        response_to_openai(&answer, model, created)
    }

    fn response_from_canonical(
        &self,
        canonical: Value,
        _created: u64,
    ) -> Result<Value, FormatError> {
        response_from_openai(&canonical)
    }

    fn framing(&self) -> Box<dyn Framing> {
        Box::new(eventstream::EventStream::default())
    }

    fn stream_media_type(&self) -> &'static str {
        eventstream::MEDIA_TYPE
    }

    /// Signed with an AWS access key (SigV4, signing name `bedrock`), or a Bedrock API key as a
    /// bearer token.
    fn auth(&self) -> super::auth::Auth {
        super::auth::Auth::SigV4 { service: "bedrock" }
    }

    fn stream_decoder(&self, context: &Context) -> Box<dyn Decoder> {
        Box::new(EventDecoder::new(context))
    }

    fn stream_encoder(&self, _context: &Context) -> Box<dyn Encoder> {
        Box::new(EventEncoder::default())
    }

    /// None: a relay writes server-sent events, and a Converse stream is binary; the decoder
    /// and encoder composed write it back in its own framing.
    fn relay(&self, _context: &Context) -> Option<Box<dyn Reframe>> {
        None
    }

    fn error_body(&self, _status: u16, _kind: &str, _code: &str, message: &str) -> String {
        error_body(message)
    }

    /// The model is in the URL, not the body: only the output limit is rewritten.
    fn pass_through_members(&self, _edit: &PassThrough<'_>) -> &'static [&'static str] {
        &["inferenceConfig"]
    }

    fn pass_through_edit(&self, request: &mut Map<String, Value>, edit: &PassThrough<'_>) {
        edit.cap(request, self.format());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{Format, cap_output_tokens, volume};

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn the_model_id_is_one_encoded_path_segment() {
        let base = "https://bedrock-runtime.us-east-1.amazonaws.com";
        let model = "anthropic.claude-3-5-sonnet-20240620-v1:0";
        assert_eq!(
            converse_url(base, "/model/{model}/converse", model, false),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        );
        assert_eq!(
            converse_url(&format!("{base}/"), "/model/{model}/converse", model, true),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
        );
        // An inference-profile ARN stays one segment; a path without a template is the default.
        assert_eq!(
            converse_url(
                base,
                "/v1",
                "arn:aws:bedrock:us-east-1:1:inference-profile/us.x",
                false
            ),
            format!(
                "{base}/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/converse"
            )
        );
    }

    #[test]
    fn the_reservation_reads_and_a_cap_writes_inference_config_max_tokens() {
        let request = object(json!({"messages": [], "inferenceConfig": {"maxTokens": 900}}));
        let ask = volume::output_ask(Format::Bedrock, &request).unwrap();
        assert_eq!(ask.max_output_tokens, Some(900));
        let mut capped = request.clone();
        cap_output_tokens(&mut capped, Format::Bedrock, false, 100);
        assert_eq!(capped["inferenceConfig"], json!({"maxTokens": 100}));
        let mut unset = object(json!({"messages": [], "inferenceConfig": {"temperature": 0.5}}));
        cap_output_tokens(&mut unset, Format::Bedrock, true, 100);
        assert_eq!(
            unset["inferenceConfig"],
            json!({"temperature": 0.5, "maxTokens": 100})
        );
        let mut bare = object(json!({"messages": []}));
        cap_output_tokens(&mut bare, Format::Bedrock, false, 7);
        assert_eq!(bare["inferenceConfig"], json!({"maxTokens": 7}));
    }

    #[test]
    fn usage_counts_cache_reads_and_writes_as_prompt_tokens() {
        let usage = usage_from_value(&json!({"inputTokens": 10, "outputTokens": 5,
            "totalTokens": 45, "cacheReadInputTokens": 20, "cacheWriteInputTokens": 10}))
        .unwrap();
        assert_eq!(
            usage,
            Usage {
                input_tokens: 40,
                output_tokens: 5,
                cached_input_tokens: 20,
                cache_creation_input_tokens: 10,
            }
        );
        assert_eq!(usage_from_value(&usage_value(&usage)), Some(usage));
        let body = br#"{"output":{"message":{"role":"assistant","content":[]}},"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7}}"#;
        assert_eq!(
            Converse.usage_of_answer(body).map(|u| u.total_tokens()),
            Some(7)
        );
    }

    #[test]
    fn a_converse_answer_reaches_clients_of_other_formats() {
        let answer = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7},"metrics":{"latencyMs":5}}"#;
        let (body, usage) =
            crate::formats::translate_response(Format::Bedrock, Format::Anthropic, answer, "m", 9)
                .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["content"], json!([{"type": "text", "text": "Hi"}]));
        assert_eq!(usage.map(|u| u.total_tokens()), Some(7));
    }

    #[test]
    fn a_converse_stream_is_reframed_for_an_openai_client() {
        use crate::formats::stream::{Flow, reframer};
        let mut bytes = eventstream::encode_event("messageStart", br#"{"role":"assistant"}"#);
        for (name, payload) in [
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            ("messageStop", r#"{"stopReason":"max_tokens"}"#),
            (
                "metadata",
                r#"{"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7},"metrics":{"latencyMs":5}}"#,
            ),
        ] {
            bytes.extend(eventstream::encode_event(name, payload.as_bytes()));
        }
        let context = Context {
            model: "m".into(),
            created: 9,
            client_wants_usage: true,
            items: None,
        };
        let mut framing = Converse.framing();
        let mut reframe = reframer(Format::Bedrock, Format::OpenAi, context);
        let (mut events, mut out, mut flows) = (Vec::new(), Vec::new(), Vec::new());
        // Bytes arrive in reads of five: messages split anywhere.
        for read in bytes.chunks(5) {
            framing.feed(read, &mut events).unwrap();
            for event in events.drain(..) {
                flows.push(reframe.event(&event, &mut out));
            }
        }
        framing.finish(&mut events).unwrap();
        assert!(events.is_empty());
        assert_eq!(flows.last(), Some(&Flow::Complete));
        let sse = String::from_utf8(out).unwrap();
        assert!(sse.contains(r#""content":"Hi""#), "{sse}");
        assert!(sse.contains(r#""finish_reason":"length""#), "{sse}");
        assert!(sse.ends_with("data: [DONE]\n\n"), "{sse}");
        assert_eq!(reframe.usage().map(|u| u.total_tokens()), Some(7));
    }

    #[test]
    fn the_model_stays_out_of_a_passed_through_body() {
        let mut request = object(json!({"messages": [], "inferenceConfig": {"maxTokens": 900}}));
        let edit = PassThrough {
            model: "m",
            shared: false,
            stream: false,
            cap: Some(50),
            newer_cap_name: false,
            searches_anyway: false,
        };
        Converse.pass_through_edit(&mut request, &edit);
        assert!(request.get("model").is_none());
        assert_eq!(request["inferenceConfig"]["maxTokens"], 50);
    }
}
