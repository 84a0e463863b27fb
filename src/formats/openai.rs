//! The OpenAI chat completions format, the gateway's canonical form: usage extraction from a
//! response body or a stream chunk, asking an upstream for streamed usage
//! (`stream_options.include_usage`), and the stream pass-through, decoder and encoder.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::pruned::{Keep, TYPES_OF_ITEMS};
use super::stream::{Decoder, Encoder, Flow, Reframe, UpstreamError};
use crate::sse::{Event, write_event};
use crate::usage::{FinishReason, Usage};

/// What a client reads as the end of an OpenAI stream.
const DONE: &str = "[DONE]";

/// Reads an OpenAI `usage` object. `prompt_tokens` already counts cached tokens; cache reads
/// are `prompt_tokens_details.cached_tokens` (DeepSeek's `prompt_cache_hit_tokens` too).
pub fn usage_from_value(usage: &Value) -> Option<Usage> {
    let usage = usage.as_object()?;
    let number = |key: &str| usage.get(key).and_then(Value::as_u64);
    let input_tokens = number("prompt_tokens")?;
    let output_tokens = number("completion_tokens").unwrap_or(0);
    let cached_input_tokens = usage
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .or_else(|| number("prompt_cache_hit_tokens"))
        .unwrap_or(0);
    Some(Usage {
        input_tokens,
        output_tokens,
        cached_input_tokens,
        cache_creation_input_tokens: 0,
    })
}

/// The usage of a whole (non-streamed) chat completion body, if it reports one.
pub fn usage_from_response(body: &[u8]) -> Option<Usage> {
    // The counts read straight into integers: a real answer's `usage` carries two nested detail
    // objects, and building them as `Value`s was most of this function's cost on every request.
    // Members it does not name are skipped unread, as the rest of the answer always was.
    #[derive(Deserialize)]
    struct Typed {
        usage: Option<ObjectOnly<TypedUsage>>,
    }
    #[derive(Deserialize)]
    struct TypedUsage {
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
        prompt_tokens_details: Option<ObjectOnly<TypedDetails>>,
        prompt_cache_hit_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct TypedDetails {
        cached_tokens: Option<u64>,
    }
    if let Ok(typed) = serde_json::from_slice::<Typed>(body) {
        let usage = typed.usage?.0;
        return Some(Usage {
            input_tokens: usage.prompt_tokens?,
            output_tokens: usage.completion_tokens.unwrap_or(0),
            cached_input_tokens: usage
                .prompt_tokens_details
                .and_then(|details| details.0.cached_tokens)
                .or(usage.prompt_cache_hit_tokens)
                .unwrap_or(0),
            cache_creation_input_tokens: 0,
        });
    }
    // A count of another type (a float, a string, a negative number), a repeated key or an
    // array where an object belongs: the lenient reading of `usage_from_value`, which the typed
    // one above agrees with otherwise.
    #[derive(Deserialize)]
    struct WithUsage {
        usage: Option<Value>,
    }
    let parsed: WithUsage = serde_json::from_slice(body).ok()?;
    usage_from_value(parsed.usage.as_ref()?)
}

/// A JSON object read as `T`, and nothing else: serde's derived structs also take an array of
/// their fields in order, which the `Value` reading of usage never did.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        deserializer.deserialize_map(Object(std::marker::PhantomData))
    }
}

/// The usage a stream chunk carries (with `include_usage`, the last chunk before `[DONE]`).
pub fn usage_from_chunk(chunk: &Value) -> Option<Usage> {
    usage_from_value(chunk.get("usage")?)
}

/// Whether a chunk is the usage-only chunk `include_usage` adds (`"choices": []` and a
/// `usage`), which is stripped when the client did not ask for it.
pub fn is_usage_only_chunk(chunk: &Value) -> bool {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && chunk.get("usage").is_some_and(Value::is_object)
}

/// Members of a chat request that make a provider spend more than the tokens of the model the
/// gateway chose, reserved and priced. On the platform's shared key they would be spent
/// without being metered, so a request carrying one is refused there (on a tenant's own key it
/// passes as sent). Each with why.
const SPENT_APART: [(&str, &str); 5] = [
    (
        "models",
        "lists models OpenRouter may serve instead of the one this gateway reserved and priced",
    ),
    (
        "route",
        "lets OpenRouter route to models this gateway did not reserve and price",
    ),
    (
        "plugins",
        "runs OpenRouter plugins (web search, file parsing), billed apart from tokens",
    ),
    (
        "preset",
        "applies an OpenRouter preset kept in the platform's account (models, providers, plugins)",
    ),
    (
        "web_search_options",
        "runs a web search, billed per call apart from tokens",
    ),
];

/// Refuses what a chat request to `model` may not do through the platform's key, which every
/// tenant shares and the gateway meters: spend on anything it cannot reserve and price
/// ([`SPENT_APART`], tools other than functions — a provider's built-in tools are billed per
/// call —, and OpenRouter's model ids that add web search or choose the model themselves), and
/// reach state kept under that key (a `file` part naming an uploaded file by `file_id`: the
/// platform's account holds it, not the tenant).
/// Dearer service options (`service_tier: priority`) are refused for every metered tenant
/// before this (`gateway::metered::request_size`). `searches_anyway`: the provider searches the web on
/// every request whatever it is asked (Perplexity), so its search options change nothing.
pub fn refuse_on_shared_key(
    request: &Map<String, Value>,
    model: &str,
    searches_anyway: bool,
) -> Result<(), super::FormatError> {
    let refuse = |message: String| Err(super::FormatError::unsupported(message));
    for (member, why) in SPENT_APART {
        if member == "web_search_options" && searches_anyway {
            continue;
        }
        let set = super::member(request, member).is_some_and(|v| match v {
            Value::Null => false,
            Value::Array(items) => !items.is_empty(),
            _ => true,
        });
        if set {
            return refuse(format!(
                "'{member}' {why}, which the platform's key cannot meter; remove it, or use your own key"
            ));
        }
    }
    for tool in crate::formats::items(super::member(request, "tools")) {
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("untyped");
        if kind != "function" && kind != "custom" {
            return refuse(format!(
                "tools of type {kind:?} are run and billed by the provider apart from tokens, which the platform's key cannot meter; use function tools, or your own key"
            ));
        }
    }
    let by_file_id = crate::formats::items(super::member(request, "messages"))
        .flat_map(|message| crate::formats::items(message.get("content")))
        .any(|part| {
            part.get("type").and_then(Value::as_str) == Some("file")
                && part
                    .get("file")
                    .and_then(|file| file.get("file_id"))
                    .is_some_and(|id| !id.is_null())
        });
    if by_file_id {
        return refuse(
            "a file part by 'file_id' refers to a file stored under the platform's shared key; send it inline ('file_data'), or use your own key"
                .to_owned(),
        );
    }
    if model.ends_with(":online") || model == "openrouter/auto" || model.starts_with("@preset/") {
        return refuse(format!(
            "model {model:?} lets OpenRouter add web search or choose the model, which the platform's key cannot meter; name the model itself, or use your own key"
        ));
    }
    Ok(())
}

/// Makes a streaming request ask the upstream for usage. Returns whether the client had asked
/// for it itself (then the usage chunk is the client's to receive).
pub fn request_stream_usage(request: &mut Map<String, Value>) -> bool {
    let options = request
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    let Value::Object(options) = options else {
        return false;
    };
    let asked = options.get("include_usage") == Some(&Value::Bool(true));
    options.insert("include_usage".to_owned(), Value::Bool(true));
    asked
}

/// The error object an OpenAI client reads when a stream fails after it started.
pub fn stream_error(message: &str) -> String {
    json!({"error": {"message": message, "type": "api_error", "param": null,
                     "code": "upstream_stream_error"}})
    .to_string()
}

/// The parts of a chunk the pass-through needs, read without building the whole tree.
#[derive(Deserialize)]
struct Probe {
    choices: Option<Choices>,
    usage: Option<Value>,
    error: Option<Value>,
}

/// A chunk's `choices`, read for whether there are any and the first finish reason among
/// them, building nothing: whatever a choice holds besides a string `finish_reason` is skipped
/// unread, as the whole list was before finish reasons were traced.
struct Choices {
    empty: bool,
    finish: Option<FinishReason>,
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::SeqAccess;
        struct ChoicesVisitor;
        impl<'de> serde::de::Visitor<'de> for ChoicesVisitor {
            type Value = Choices;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
                let mut choices = Choices {
                    empty: true,
                    finish: None,
                };
                while let Some(Reason(finish)) = seq.next_element()? {
                    choices.empty = false;
                    choices.finish = choices.finish.or(finish);
                }
                Ok(choices)
            }
        }
        deserializer.deserialize_seq(ChoicesVisitor)
    }
}

/// A choice read for its finish reason (an object's string `finish_reason`; the reason itself
/// when read as that member's value); anything else is skipped unread and reads as none.
struct Reason(Option<FinishReason>);

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess};
        /// The one member name looked for; every other name is read without allocating.
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Member {
            FinishReason,
            #[serde(other)]
            Other,
        }
        struct ReasonVisitor;
        impl<'de> serde::de::Visitor<'de> for ReasonVisitor {
            type Value = Reason;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a choice")
            }
            fn visit_str<E>(self, reason: &str) -> Result<Reason, E> {
                Ok(Reason(Some(FinishReason::from_canonical(reason))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Reason, A::Error> {
                let mut finish = None;
                while let Some(member) = map.next_key::<Member>()? {
                    match member {
                        Member::FinishReason => finish = map.next_value::<Reason>()?.0,
                        Member::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Reason(finish))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Reason, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Reason(None))
            }
            fn visit_unit<E>(self) -> Result<Reason, E> {
                Ok(Reason(None))
            }
            fn visit_none<E>(self) -> Result<Reason, E> {
                Ok(Reason(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Reason, E> {
                Ok(Reason(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Reason, E> {
                Ok(Reason(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Reason, E> {
                Ok(Reason(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Reason, E> {
                Ok(Reason(None))
            }
        }
        deserializer.deserialize_any(ReasonVisitor)
    }
}

/// OpenAI upstream, OpenAI client: every chunk is passed on as it came; usage is read on the
/// way and the usage-only chunk is held back when the client did not ask for it.
#[derive(Debug)]
pub struct Passthrough {
    client_wants_usage: bool,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

impl Passthrough {
    /// A pass-through; `client_wants_usage` keeps the usage chunk in what the client gets.
    pub fn new(client_wants_usage: bool) -> Self {
        Self {
            client_wants_usage,
            usage: None,
            finish: None,
        }
    }
}

impl Reframe for Passthrough {
    fn event(&mut self, event: &Event, out: &mut Vec<u8>) -> Flow {
        if event.data.trim() == DONE {
            write_event(out, event.event.as_deref(), DONE);
            return Flow::Complete;
        }
        if !worth_reading(&event.data) {
            write_event(out, event.event.as_deref(), &event.data);
            return Flow::Continue;
        }
        let Ok(probe) = serde_json::from_str::<Probe>(&event.data) else {
            // Not JSON: not ours to judge; the client sees what the provider sent.
            write_event(out, event.event.as_deref(), &event.data);
            return Flow::Continue;
        };
        if probe.error.is_some() {
            write_event(out, event.event.as_deref(), &event.data);
            return Flow::Failed;
        }
        if let Some(reason) = probe.choices.as_ref().and_then(|choices| choices.finish) {
            self.finish = Some(reason);
        }
        if let Some(usage) = probe.usage.as_ref().and_then(usage_from_value) {
            self.usage = Some(usage);
            let usage_only = probe.choices.as_ref().is_some_and(|choices| choices.empty);
            if usage_only && !self.client_wants_usage {
                return Flow::Continue;
            }
        }
        write_event(out, event.event.as_deref(), &event.data);
        Flow::Continue
    }

    // `end`: every OpenAI-format server ends a complete stream with [DONE], which this relay
    // has not seen if it is asked.

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) {
        write_event(out, None, &stream_error(message));
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }
}

/// Whether a chunk may carry what the relay reads from it: a usage report, an error, a finish
/// reason. A content delta, nearly every event of a stream, carries none (its `finish_reason`
/// and, with `include_usage`, its `usage` are `null`) and is relayed without being parsed:
/// parsing was a quarter of a relayed stream's instructions (callgrind). The names are looked
/// for as JSON writes them; inside a string a quote is escaped, so text that merely mentions
/// them is at worst read for nothing. A server that spelled a member's name with `\u` escapes
/// would have it missed: its usage then reads as unreported, and the request is charged its
/// reservation (the safe side).
fn worth_reading(data: &str) -> bool {
    static NAMES: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> =
        std::sync::LazyLock::new(|| {
            [b"\"usage\"".as_slice(), b"\"error\"", b"\"finish_reason\""]
                .map(memchr::memmem::Finder::new)
        });
    let bytes = data.as_bytes();
    NAMES.iter().any(|name| {
        let mut rest = bytes;
        while let Some(at) = name.find(rest) {
            rest = &rest[at + name.needle().len()..];
            let value = rest
                .trim_ascii_start()
                .strip_prefix(b":")
                .map(<[u8]>::trim_ascii_start);
            if !value.is_some_and(|value| value.starts_with(b"null")) {
                return true;
            }
        }
        false
    })
}

/// OpenAI-format upstream read into canonical chunks (for a client of another format).
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    usage: Option<Usage>,
    finished: bool,
}

impl Decoder for ChunkDecoder {
    fn event(&mut self, event: &Event, out: &mut Vec<Value>) -> Result<bool, UpstreamError> {
        if event.data.trim() == DONE {
            return Ok(true);
        }
        let chunk: Value = serde_json::from_str(&event.data)
            .map_err(|_| UpstreamError("the provider sent a chunk that is not JSON".to_owned()))?;
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the provider failed in the middle of the stream");
            return Err(UpstreamError(message.to_owned()));
        }
        if let Some(usage) = usage_from_chunk(&chunk) {
            self.usage = Some(usage);
        }
        if chunk
            .pointer("/choices/0/finish_reason")
            .is_some_and(|r| !r.is_null())
        {
            self.finished = true;
        }
        out.push(chunk);
        Ok(false)
    }

    fn end(&mut self, _out: &mut Vec<Value>) -> bool {
        self.finished
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// Canonical chunks written for an OpenAI client.
#[derive(Debug)]
pub struct ChunkEncoder {
    client_wants_usage: bool,
}

impl ChunkEncoder {
    /// An encoder; the usage-only chunk is written only if the client asked for it.
    pub fn new(client_wants_usage: bool) -> Self {
        Self { client_wants_usage }
    }
}

impl Encoder for ChunkEncoder {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if !self.client_wants_usage && is_usage_only_chunk(chunk) {
            return;
        }
        write_event(out, None, &chunk.to_string());
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        write_event(out, None, DONE);
    }

    fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        write_event(out, None, &stream_error(message));
    }
}

/// A canonical stream chunk: one choice with `delta` and `finish_reason`.
pub fn chunk(id: &str, model: &str, created: u64, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// A canonical whole answer (a chat completion of one choice), as every format's answer is read
/// into: `id` and `model` as the answer gave them (or what stands in for them).
pub fn completion(
    id: Value,
    model: Value,
    created: u64,
    message: Value,
    finish: Value,
    usage: &Usage,
) -> Value {
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": super::openai_usage(usage),
    })
}

/// The canonical usage-only chunk that ends a stream.
pub fn usage_chunk(id: &str, model: &str, created: u64, usage: &Usage) -> Value {
    json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [], "usage": super::openai_usage(usage),
    })
}

// ---------------------------------------------------------------------------------------------
// The dialect

/// Where a chat request bounds its output.
const OUTPUT_FIELDS: super::volume::OutputFields = super::volume::OutputFields {
    within: &[],
    // OpenAI's two names, then what OpenAI-compatible servers also honour on this path:
    // llama.cpp's `n_predict` (read before `max_tokens`), Ollama's `num_predict`, Hugging Face
    // TGI's `max_new_tokens`.
    limits: &[
        "max_completion_tokens",
        "max_tokens",
        "n_predict",
        "num_predict",
        "max_new_tokens",
    ],
    choices: &["n"],
    // vLLM and other compatible servers honour `best_of` on chat requests: it samples that many
    // answers and returns the best, each one paid for.
    unbounded: &["best_of"],
};

/// OpenAI chat completions: the canonical form itself (and every OpenAI-compatible provider,
/// Ollama, the mock).
pub struct Chat;

/// An endpoint of an OpenAI-format API beside its chat endpoint (`…/chat/completions` →
/// `…/{name}`: `embeddings`, `responses`); `None` for a chat path of another shape.
pub fn beside_chat(base: &str, chat_path: &str, name: &str) -> Option<String> {
    let path = chat_path.strip_suffix("chat/completions")?;
    Some(format!("{base}{path}{name}"))
}

/// What a canonical stream chunk's first choice carries, as the encoders of the other
/// formats read it.
pub struct ChoiceDelta<'a> {
    /// The delta itself (its `tool_calls`: [`tool_calls`]).
    pub delta: &'a Value,
    /// `reasoning_content`.
    pub reasoning: Option<&'a str>,
    /// `content`.
    pub content: Option<&'a str>,
    /// `finish_reason`.
    pub finish: Option<&'a str>,
}

/// The first choice of a canonical stream chunk; `None` for a chunk without one (the usage
/// chunk).
pub fn choice_delta(chunk: &Value) -> Option<ChoiceDelta<'_>> {
    let choice = chunk.pointer("/choices/0")?;
    let delta = choice.get("delta").unwrap_or(&Value::Null);
    let text = |name: &str| delta.get(name).and_then(Value::as_str);
    Some(ChoiceDelta {
        delta,
        reasoning: text("reasoning_content"),
        content: text("content"),
        finish: choice.get("finish_reason").and_then(Value::as_str),
    })
}

/// The tool calls of a canonical message or stream delta, in order (none when absent).
pub fn tool_calls(message: &Value) -> impl Iterator<Item = &Value> {
    crate::formats::items(message.get("tool_calls"))
}

/// `OpenAI-Beta`: opts into beta APIs (the Assistants and Realtime versions).
pub const CLIENT_HEADERS: [super::dialect::ClientHeader; 1] = [super::dialect::ClientHeader {
    name: "openai-beta",
    default: None,
    betas: false,
}];

impl super::dialect::Dialect for Chat {
    fn client_headers(&self) -> &'static [super::dialect::ClientHeader] {
        &CLIENT_HEADERS
    }

    fn refuse_on_shared_key(
        &self,
        request: &Map<String, Value>,
        edit: &super::dialect::PassThrough<'_>,
    ) -> Result<(), super::FormatError> {
        refuse_on_shared_key(request, edit.model, edit.searches_anyway)
    }

    /// Besides the members [`SPENT_APART`] names and the model: each tool's type, and the type
    /// and `file.file_id` of each content part of each message.
    fn shared_key_check_reads(&self) -> Option<&'static [(&'static str, Keep)]> {
        const PART: Keep = Keep::Members(&[
            ("type", Keep::Whole),
            ("file", Keep::Members(&[("file_id", Keep::Whole)])),
        ]);
        const MESSAGE: Keep = Keep::Members(&[("content", Keep::Items(&PART))]);
        Some(&[
            ("tools", TYPES_OF_ITEMS),
            ("messages", Keep::Items(&MESSAGE)),
        ])
    }

    fn forwarded_unread(&self) -> &'static [&'static str] {
        &["messages", "tools"]
    }

    fn pass_through_members(
        &self,
        _edit: &super::dialect::PassThrough<'_>,
    ) -> &'static [&'static str] {
        &[
            "model",
            "stream_options",
            "max_tokens",
            "max_completion_tokens",
            "n_predict",
            "num_predict",
            "max_new_tokens",
        ]
    }

    /// The model, the usage chunk a metered stream needs, the output limit.
    fn pass_through_edit(
        &self,
        request: &mut Map<String, Value>,
        edit: &super::dialect::PassThrough<'_>,
    ) {
        request.insert("model".into(), Value::from(edit.model));
        if edit.stream {
            request_stream_usage(request);
        }
        edit.cap(request, super::Format::OpenAi);
    }

    fn embeddings(&self) -> Option<&'static dyn super::embeddings::EmbeddingsDialect> {
        Some(&super::embeddings::OpenAiEmbeddings)
    }

    fn cap_field(&self, newer_name: bool) -> &'static str {
        if newer_name {
            "max_completion_tokens"
        } else {
            "max_tokens"
        }
    }

    fn output_fields(&self) -> &'static super::volume::OutputFields {
        &OUTPUT_FIELDS
    }

    fn request_from_canonical(
        &self,
        canonical: &Map<String, Value>,
        target: &super::dialect::Target<'_>,
    ) -> Result<Map<String, Value>, super::FormatError> {
        let mut request = canonical.clone();
        request.insert("model".into(), Value::from(target.model));
        Ok(request)
    }

    fn format(&self) -> super::Format {
        super::Format::OpenAi
    }

    fn request_to_canonical(
        &self,
        _request: &Map<String, Value>,
    ) -> Option<Result<Map<String, Value>, super::FormatError>> {
        None
    }

    fn usage_of_answer(&self, body: &[u8]) -> Option<Usage> {
        usage_from_response(body)
    }

    fn finish_reason_of_answer(&self, body: &[u8]) -> Option<FinishReason> {
        // The one field read, the rest skipped unbuilt: re-reading the answer as a `Value` cost
        // ~39k instructions per traced request (callgrind).
        #[derive(Deserialize)]
        struct Answer {
            choices: Option<Choices>,
        }
        let answer: Answer = serde_json::from_slice(body).ok()?;
        answer.choices?.finish
    }

    fn response_to_canonical(
        &self,
        answer: Value,
        _model: &str,
        _created: u64,
    ) -> Result<Value, super::FormatError> {
        Ok(answer)
    }

    fn response_from_canonical(
        &self,
        canonical: Value,
        _created: u64,
    ) -> Result<Value, super::FormatError> {
        Ok(canonical)
    }

    fn stream_decoder(&self, _context: &super::stream::Context) -> Box<dyn Decoder> {
        Box::new(ChunkDecoder::default())
    }

    fn stream_encoder(&self, context: &super::stream::Context) -> Box<dyn Encoder> {
        Box::new(ChunkEncoder::new(context.client_wants_usage))
    }

    fn relay(&self, context: &super::stream::Context) -> Option<Box<dyn Reframe>> {
        Some(Box::new(Passthrough::new(context.client_wants_usage)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chunks_that_may_carry_usage_errors_or_a_finish_are_read() {
        let delta =
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        assert!(!worth_reading(delta));
        assert!(!worth_reading(r#"{"choices":[{"finish_reason" : null}]}"#));
        // With include_usage, every chunk but the last says `"usage":null`.
        assert!(!worth_reading(
            r#"{"choices":[{"finish_reason":null}],"usage":null}"#
        ));
        // Text that mentions a name, its quotes escaped, is not one.
        assert!(!worth_reading(
            r#"{"choices":[{"delta":{"content":"\"usage\" \"error\""},"finish_reason":null}]}"#
        ));
        assert!(worth_reading(
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#
        ));
        assert!(worth_reading(
            r#"{"choices":[{"finish_reason": "length"}]}"#
        ));
        // The second of two choices finishing.
        assert!(worth_reading(
            r#"{"choices":[{"finish_reason":null},{"finish_reason":"stop"}]}"#
        ));
        assert!(worth_reading(
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(worth_reading(r#"{"error":{"message":"overloaded"}}"#));
        // A finish_reason with no value after it (not JSON) is read, and judged there.
        assert!(worth_reading(r#"{"finish_reason""#));
    }
    use serde_json::json;

    #[test]
    fn only_members_spent_apart_are_refused_on_the_shared_key_and_null_is_absent() {
        let object = |v: Value| v.as_object().cloned().unwrap();
        let plain = object(
            json!({"model": "m", "messages": [], "models": null, "plugins": [],
            "provider": {"sort": "price"}, "service_tier": "flex",
            "tools": [{"type": "function", "function": {"name": "f"}}]}),
        );
        assert!(refuse_on_shared_key(&plain, "m", false).is_ok());
        for member in ["models", "route", "plugins", "preset", "web_search_options"] {
            let request = object(json!({"model": "m", member: ["x"]}));
            let error = refuse_on_shared_key(&request, "m", false)
                .expect_err(member)
                .to_string();
            assert!(error.contains(&format!("'{member}'")), "{error}");
        }
        // Perplexity searches on every request: its search options change nothing.
        let perplexity = object(json!({"web_search_options": {"search_context_size": "high"}}));
        assert!(refuse_on_shared_key(&perplexity, "sonar", true).is_ok());
        for (request, model, named) in [
            (
                json!({"tools": [{"type": "browser_search"}]}),
                "m",
                "browser_search",
            ),
            (json!({}), "openai/gpt-4o:online", ":online"),
            (json!({}), "openrouter/auto", "openrouter/auto"),
        ] {
            let error = refuse_on_shared_key(&object(request), model, false)
                .expect_err(named)
                .to_string();
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn reads_usage_with_cached_tokens_from_a_response() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "choices": [],
            "usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                      "prompt_tokens_details": {"cached_tokens": 1920}}
        });
        assert_eq!(
            usage_from_response(body.to_string().as_bytes()),
            Some(Usage {
                input_tokens: 2006,
                output_tokens: 300,
                cached_input_tokens: 1920,
                cache_creation_input_tokens: 0
            })
        );
        assert_eq!(usage_from_response(b"{\"choices\":[]}"), None);
        assert_eq!(usage_from_response(b"not json"), None);
    }

    #[test]
    fn the_typed_reading_of_a_response_agrees_with_the_lenient_one() {
        let usages = [
            json!({"prompt_tokens": 7, "completion_tokens": 3}),
            json!({"prompt_tokens": 7}),
            json!({"completion_tokens": 3}),
            json!({"prompt_tokens": null, "completion_tokens": 3}),
            json!({"prompt_tokens": 7, "completion_tokens": 2.5}),
            json!({"prompt_tokens": 7.0, "completion_tokens": 3}),
            json!({"prompt_tokens": -1, "completion_tokens": 3}),
            json!({"prompt_tokens": "7", "completion_tokens": 3}),
            json!({"prompt_tokens": 7, "prompt_tokens_details": null, "prompt_cache_hit_tokens": 4}),
            json!({"prompt_tokens": 7, "prompt_tokens_details": {"cached_tokens": null}, "prompt_cache_hit_tokens": 4}),
            json!({"prompt_tokens": 7, "prompt_tokens_details": {"cached_tokens": 5}, "prompt_cache_hit_tokens": 4}),
            json!({"prompt_tokens": 7, "prompt_tokens_details": "none"}),
            json!({"prompt_tokens": 7, "completion_tokens_details": {"reasoning_tokens": 2}, "extra": [1, {"a": 2}]}),
            json!({"prompt_tokens": 7, "prompt_tokens_details": [5], "prompt_cache_hit_tokens": 4}),
            json!(null),
            json!(42),
            json!([]),
            json!([7, 3, null, null]),
        ];
        for usage in usages {
            let body =
                json!({"id": "c", "choices": [{"message": {"content": "hi"}}], "usage": usage});
            let expected = usage
                .is_object()
                .then(|| usage_from_value(&usage))
                .flatten();
            assert_eq!(
                usage_from_response(body.to_string().as_bytes()),
                expected,
                "{usage}"
            );
        }
        // A repeated key: the last one counts, as when the body is read as a `Value`.
        let repeated = br#"{"usage":{"prompt_tokens":1,"prompt_tokens":9,"completion_tokens":2}}"#;
        assert_eq!(
            usage_from_response(repeated).map(|u| u.input_tokens),
            Some(9)
        );
    }

    #[test]
    fn reads_deepseek_cache_hits() {
        let usage =
            json!({"prompt_tokens": 10, "completion_tokens": 2, "prompt_cache_hit_tokens": 8});
        assert_eq!(usage_from_value(&usage).unwrap().cached_input_tokens, 8);
    }

    #[test]
    fn the_pass_through_reads_the_finish_reason_and_tolerates_odd_choices() {
        let event = |data: &str| Event {
            event: None,
            data: data.to_owned(),
            id: None,
            retry: None,
        };
        let mut relay = Passthrough::new(false);
        let mut out = Vec::new();
        for data in [
            r#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}"#,
            // Not objects, or a reason that is not a string: read as no reason, still relayed.
            r#"{"choices":[1,"x",null,[2],{"finish_reason":7}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        ] {
            assert_eq!(
                relay.event(&event(data), &mut out),
                Flow::Continue,
                "{data}"
            );
        }
        assert_eq!(relay.finish_reason(), Some(FinishReason::Length));
        assert_eq!(relay.usage().unwrap().output_tokens, 2);
        let relayed = String::from_utf8(out).unwrap();
        assert!(relayed.contains(r#"[1,"x",null,[2],{"finish_reason":7}]"#));
        // The usage-only chunk is still held back from a client that did not ask for it.
        assert!(!relayed.contains("prompt_tokens"));
        use super::super::dialect::Dialect as _;
        assert_eq!(
            Chat.finish_reason_of_answer(
                br#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[]},"finish_reason":"tool_calls"}]}"#
            ),
            Some(FinishReason::ToolCalls)
        );
    }

    #[test]
    fn recognises_the_usage_only_chunk() {
        let last = json!({"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}});
        assert!(is_usage_only_chunk(&last));
        assert_eq!(usage_from_chunk(&last).unwrap().input_tokens, 5);
        let content =
            json!({"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null});
        assert!(!is_usage_only_chunk(&content));
        assert_eq!(usage_from_chunk(&content), None);
    }

    #[test]
    fn injects_include_usage_and_says_whether_the_client_asked() {
        let mut request = json!({"model":"m","stream":true})
            .as_object()
            .unwrap()
            .clone();
        assert!(!request_stream_usage(&mut request));
        assert_eq!(request["stream_options"], json!({"include_usage": true}));
        let mut request = json!({"stream_options":{"include_usage":true}})
            .as_object()
            .unwrap()
            .clone();
        assert!(request_stream_usage(&mut request));
        let mut request = json!({"stream_options":{"include_usage":false, "x": 1}})
            .as_object()
            .unwrap()
            .clone();
        assert!(!request_stream_usage(&mut request));
        assert_eq!(
            request["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
    }
}
