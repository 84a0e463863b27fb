//! One dialect per wire format, and the registry that picks it: the only place that matches on
//! [`Format`]. A dialect owns what differs between formats — reading a request into the
//! canonical form (OpenAI chat), writing a whole answer from it and reading one into it, the
//! usage of an answer relayed as sent, the stream's decoder and encoder and its same-format
//! relay, the error body a client of the format reads, writing a canonical request in it, where
//! its output limit lives, its chat URL, and how a request in it is authenticated — so code that handles any format asks the registry instead of matching, and a
//! new format is one module implementing [`Dialect`] and one line in [`dialect`].

use serde_json::{Map, Value};

pub use super::auth::Auth;
use super::pruned::Keep;
use super::stream::{Context, Decoder, Encoder, Framing, Reframe};
use super::volume::OutputFields;
use super::{Format, FormatError, anthropic, bedrock, cohere, gemini, openai, responses};
use crate::usage::{FinishReason, Usage};

/// What differs between wire formats. Every method has the one meaning for all formats; the
/// canonical form is OpenAI chat.
pub trait Dialect: Sync {
    /// The format this dialect speaks.
    fn format(&self) -> Format;

    /// Where the format keeps the fields that bound its output (what the reservation reads and
    /// an allowance cap writes).
    fn output_fields(&self) -> &'static OutputFields;

    /// A canonical request written in this format for `target` (the model in the body where
    /// the format puts it there).
    fn request_from_canonical(
        &self,
        canonical: &Map<String, Value>,
        target: &Target<'_>,
    ) -> Result<Map<String, Value>, FormatError>;

    /// The member holding a request's conversation, and whether it may be a plain string
    /// (checked at the front door: empty or missing is a 400).
    fn conversation(&self) -> Conversation {
        Conversation {
            member: "messages",
            text_allowed: false,
        }
    }

    /// The output-limit field a cap writes when the request set none; `newer_name`: the
    /// provider refuses OpenAI's older `max_tokens` (its reasoning models).
    fn cap_field(&self, newer_name: bool) -> &'static str {
        let _ = newer_name;
        self.output_fields()
            .limits
            .first()
            .copied()
            .unwrap_or("max_tokens")
    }

    /// What else a cap of the output limit to `cap` must change in a request of this format
    /// (Anthropic: a thinking budget must stay below `max_tokens`).
    fn fit_to_cap(&self, request: &mut Map<String, Value>, cap: u64) {
        let _ = (request, cap);
    }

    /// The URL a request in this format goes to, under a provider's `base` URL and its
    /// type's chat `path`; `None`: the provider serves no such endpoint.
    fn chat_url(&self, base: &str, path: &str, model: &str, stream: bool) -> Option<String> {
        let _ = (model, stream);
        Some([base, path].concat())
    }

    /// A request of this format in the canonical form; `None` when it is canonical already.
    fn request_to_canonical(
        &self,
        request: &Map<String, Value>,
    ) -> Option<Result<Map<String, Value>, FormatError>>;

    /// The usage a whole answer of this format reports, read from its bytes (an answer relayed
    /// to a client of the same format as it came).
    fn usage_of_answer(&self, body: &[u8]) -> Option<Usage>;

    /// Why the model stopped, as a whole answer of this format says (canonical names). By
    /// default the answer is read into the canonical form again: a format whose answers are
    /// often relayed as sent reads just its field instead.
    fn finish_reason_of_answer(&self, body: &[u8]) -> Option<FinishReason> {
        let parsed: Value = serde_json::from_slice(body).ok()?;
        let canonical = self.response_to_canonical(parsed, "", 0).ok()?;
        FinishReason::of_canonical(&canonical)
    }

    /// A whole answer of this format in the canonical form; `model` and `created` fill what the
    /// format leaves out.
    fn response_to_canonical(
        &self,
        answer: Value,
        model: &str,
        created: u64,
    ) -> Result<Value, FormatError>;

    /// A canonical whole answer written in this format, for a client that speaks it.
    fn response_from_canonical(&self, canonical: Value, created: u64)
    -> Result<Value, FormatError>;

    /// How a stream of this format is cut into events (server-sent events unless it says
    /// otherwise).
    fn framing(&self) -> Box<dyn Framing> {
        Box::new(crate::sse::Parser::default())
    }

    /// The media type of a streamed answer in this format, which a provider's stream is checked
    /// for before it is read with [`Dialect::framing`] (anything else is the provider failing).
    fn stream_media_type(&self) -> &'static str {
        "text/event-stream"
    }

    /// Reads a stream of this format into canonical chunks.
    fn stream_decoder(&self, context: &Context) -> Box<dyn Decoder>;

    /// Writes canonical chunks as a stream of this format.
    fn stream_encoder(&self, context: &Context) -> Box<dyn Encoder>;

    /// Relays a stream of this format to a client of the same format, reading its usage on the
    /// way; `None`: composed of the decoder and the encoder like any other pair.
    fn relay(&self, context: &Context) -> Option<Box<dyn Reframe>>;

    /// The error body a client of this format reads.
    fn error_body(&self, status: u16, kind: &str, code: &str, message: &str) -> String {
        let _ = status;
        openai_error_body(kind, code, message)
    }

    /// What a request in this format may not ask of a key every tenant shares (server-side
    /// tools, state stored under the key, searches it pays for): checked on every attempt the
    /// platform's key pays, before the request goes.
    fn refuse_on_shared_key(
        &self,
        request: &Map<String, Value>,
        edit: &PassThrough<'_>,
    ) -> Result<(), FormatError> {
        let _ = (request, edit);
        Ok(())
    }

    /// What [`Self::refuse_on_shared_key`] reads of the members a front door may leave
    /// unparsed ([`Self::forwarded_unread`]): each member it reads, with the paths it reads in
    /// it; those are parsed for the check, and nothing else of them. `None`, the default: it
    /// may read anything, and the whole body is parsed first. A test holds each dialect's
    /// answer to its check (`checks_read_only_what_they_declare`).
    fn shared_key_check_reads(&self) -> Option<&'static [(&'static str, Keep)]> {
        None
    }

    /// The members a pass-through of this format forwards without reading (the conversation,
    /// tools, a system prompt: most of a real request's bytes), which its front door leaves
    /// as the bytes that arrived; they are parsed only when something reads the whole body (a
    /// translation) or a check reads them. Empty, the default, for a front door that reads or
    /// rewrites its body.
    fn forwarded_unread(&self) -> &'static [&'static str] {
        &[]
    }

    /// The members a request in this format may have rewritten on its way to a provider of the
    /// same format; every other member goes as it arrived.
    fn pass_through_members(&self, edit: &PassThrough<'_>) -> &'static [&'static str];

    /// Rewrites those members: the model where the format keeps it in the body, the output
    /// limit when one is enforced, and what else the format needs.
    fn pass_through_edit(&self, request: &mut Map<String, Value>, edit: &PassThrough<'_>) {
        request.insert("model".into(), Value::from(edit.model));
        edit.cap(request, self.format());
    }

    /// One model as a client of this format reads it (`owner`: the provider serving it). The
    /// gateway knows no release dates: OpenAI's `created` is 0.
    fn model_object(&self, id: &str, owner: &str) -> Value {
        serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
    }

    /// The model list a client of this format reads: `models` (id, owner) sorted by id, cut to
    /// `page` where the format pages its list.
    fn model_list(&self, models: &[(&str, &str)], page: &super::models::Page<'_>) -> Value {
        let _ = page;
        let data: Vec<Value> = models
            .iter()
            .map(|(id, owner)| self.model_object(id, owner))
            .collect();
        serde_json::json!({"object": "list", "data": data})
    }

    /// The client headers a provider of this format reads, passed on from the client's
    /// request (the gateway's default where the format requires one).
    fn client_headers(&self) -> &'static [ClientHeader] {
        &[]
    }

    /// Its embeddings endpoint; `None`: the format serves no embeddings.
    fn embeddings(&self) -> Option<&'static dyn super::embeddings::EmbeddingsDialect> {
        None
    }

    /// How a request to a provider of this format carries the key.
    fn auth(&self) -> Auth {
        Auth::Bearer
    }
}

/// A client header a provider's API reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHeader {
    /// Its name, lower-case.
    pub name: &'static str,
    /// What is sent when the client sent none (the format requires it).
    pub default: Option<&'static str>,
    /// It lists betas, which a provider's beta policy filters (`anthropic-beta`).
    pub betas: bool,
}

/// What a request going to a provider of its own format is edited for.
#[derive(Clone, Copy, Debug)]
pub struct PassThrough<'a> {
    /// The model, as the provider names it.
    pub model: &'a str,
    /// Whether the platform's key, shared by every tenant, pays for it.
    pub shared: bool,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The output limit the reservation enforces, when the request's own would allow more.
    pub cap: Option<u64>,
    /// The provider refuses OpenAI's older `max_tokens` (OpenAI's reasoning models).
    pub newer_cap_name: bool,
    /// The provider searches the web on every request (Perplexity): paid for even unasked.
    pub searches_anyway: bool,
}

impl PassThrough<'_> {
    /// Enforces the output limit, if there is one, in a request of `format`.
    pub fn cap(&self, request: &mut Map<String, Value>, format: Format) {
        if let Some(cap) = self.cap {
            super::cap_output_tokens(request, format, self.newer_cap_name, cap);
        }
    }
}

/// What a request is written for.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The model, as the provider names it.
    pub model: &'a str,
    /// The output limit written when the format requires one and the request gave none (the
    /// model's catalog maximum).
    pub default_max_output_tokens: u64,
}

/// Where a request keeps its conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// The member (`messages`, `contents`, `input`).
    pub member: &'static str,
    /// Whether a non-empty string stands for the conversation (the Responses API's `input`).
    pub text_allowed: bool,
}

/// The registry: the dialect of each format.
pub fn dialect(format: Format) -> &'static dyn Dialect {
    match format {
        Format::OpenAi => &openai::Chat,
        Format::Anthropic => &anthropic::Messages,
        Format::Gemini => &gemini::GenerateContent,
        Format::Cohere => &cohere::Chat,
        Format::Responses => &responses::ResponsesApi,
        Format::Bedrock => &bedrock::Converse,
    }
}

/// OpenAI's error body, `{"error":{"message","type","param","code"}}` (read by every client of
/// an OpenAI-shaped API).
pub fn openai_error_body(kind: &str, code: &str, message: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        .to_string()
}

/// Where a whole answer of a format reports its usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum UsageMember {
    /// `usage` (Anthropic, Cohere, the Responses API).
    Usage,
    /// `usageMetadata` (Gemini).
    UsageMetadata,
}

/// Usage read from its member of a whole answer with `read`. Only that member is built as a
/// `Value`; the rest of the answer (its content, up to the size the gateway relays) is skipped
/// unread, as `openai::usage_from_response` does for OpenAI's answers.
pub(super) fn usage_member(
    body: &[u8],
    member: UsageMember,
    read: fn(&Value) -> Option<Usage>,
) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct Members {
        usage: Option<Value>,
        #[serde(rename = "usageMetadata")]
        usage_metadata: Option<Value>,
    }
    let members: Members = serde_json::from_slice(body).ok()?;
    let value = match member {
        UsageMember::Usage => members.usage,
        UsageMember::UsageMetadata => members.usage_metadata,
    };
    read(&value?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dialect's check of the platform's key gives the same verdict on the view a
    /// pass-through hands it (the members a front door leaves unparsed left out, but for what
    /// the dialect declares its check reads, pruned to those paths: `SentBody::with_kept`) as
    /// on the whole body, for bodies written as clients may write them (escaped names, names
    /// given twice, items of every type).
    #[test]
    fn checks_read_only_what_they_declare() {
        use super::super::SentBody;
        // Members that trip (or nearly trip) each check, written as raw JSON; a body is a base
        // plus one or two of them.
        let fragments = [
            "",
            r#""tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "web_search"}}}]"#,
            r#""tools": [{"type": "web_search_20250305", "name": "web_search"}]"#,
            r#""tools": [{"type": "bash_20250124", "name": "bash"}, {"type": "browser_search"}]"#,
            r#""tools": [{"name": "untyped"}, "text", {"type": {"odd": true}}, null, [1]]"#,
            r#""tools": [{"\u0074ype": "web_search"}]"#,
            r#""tools": [{"type": "function", "type": "web_search"}]"#,
            r#""tools": [{"type": "web_search", "type": "function"}]"#,
            r#""tools": [{"$serde_json::private::RawValue": "{\"type\":\"web_search\"}"}]"#,
            r#""tools": {"type": "web_search"}"#,
            r#""tools": [{"type": "custom", "name": "c"}]"#,
            r#""messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "file", "file_id": "f"}}]}]"#,
            r#""messages": [{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]"#,
            r#""messages": [{"content": [{"type": "text", "source": {"\u0074ype": "file"}}]}]"#,
            r#""messages": [{"content": [{"source": {"type": "base64"}, "source": {"type": "file"}}]}]"#,
            r#""messages": [{"role": "user", "content": [{"type": "text", "text": "source type file", "source": "file"}]}]"#,
            r#""messages": [{"content": "container_upload"}, {"content": [{"type": "image", "source": {"type": "base64"}}]}]"#,
            r#""messages": {"content": [{"type": "container_upload"}]}"#,
            r#""messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-of-tenant-a"}}]}]"#,
            r#""messages": [{"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,AA==", "file_id": null}}]}]"#,
            r#""messages": [{"role": "user", "content": [{"type": "text", "text": "file", "file": {"file_id": "f"}}]}]"#,
            r#""messages": [{"content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}]"#,
            r#""messages": [{"content": [{"type": "tool_result", "content": [{"type": "document", "source": {"type": "content", "content": [{"type": "image", "source": {"type": "file"}}]}}]}]}]"#,
            r#""messages": [{"content": [{"type": "tool_result", "content": "source file container_upload"}]}]"#,
            r#""messages": [{"content": [{"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "file"}]}}]}]"#,
            r#""system": [{"type": "container_upload"}], "mcp_servers": null"#,
            r#""mcp_servers": [{"type": "url", "url": "https://example.com"}]"#,
            r#""mcp_servers": {"$serde_json::private::RawValue": "null"}"#,
            r#""web_search_options": {"$serde_json::private::RawValue": "null"}"#,
            r#""container": "c_1""#,
            r#""plugins": [{"id": "web"}]"#,
        ];
        let name_of = |fragment: &str| fragment.split('"').nth(1).unwrap_or("").to_owned();
        for format in [Format::OpenAi, Format::Anthropic] {
            let dialect = dialect(format);
            let reads = dialect
                .shared_key_check_reads()
                .expect("the pass-through formats say what their checks read");
            let edit = PassThrough {
                model: "m",
                shared: true,
                stream: false,
                cap: None,
                newer_cap_name: false,
                searches_anyway: false,
            };
            for first in fragments {
                for second in fragments {
                    if !first.is_empty() && name_of(first) == name_of(second) {
                        continue;
                    }
                    let mut body = String::from(r#"{"model": "m", "max_tokens": 10"#);
                    for fragment in [first, second].into_iter().filter(|f| !f.is_empty()) {
                        body.push_str(", ");
                        body.push_str(fragment);
                    }
                    if !body.contains(r#""messages""#) {
                        body.push_str(r#", "messages": [{"role": "user", "content": "hi"}]"#);
                    }
                    body.push('}');
                    let unread = dialect.forwarded_unread();
                    let (_, whole) = match SentBody::read(body.clone().into(), &[], &[]) {
                        Ok(read) => read,
                        // Refused at the front door before any check.
                        Err(super::super::SentBodyError::Duplicate(_)) => continue,
                        Err(error) => panic!("{body}: {error}"),
                    };
                    let verdict = dialect.refuse_on_shared_key(&whole, &edit);
                    // Read with the body, as the front doors do, and read when the view is made.
                    for kept_when_read in [reads, &[]] {
                        let (sent, parsed) =
                            SentBody::read(body.clone().into(), unread, kept_when_read).unwrap();
                        let view = sent.with_kept(&parsed, unread, reads).unwrap();
                        assert_eq!(
                            dialect.refuse_on_shared_key(&view, &edit),
                            verdict,
                            "{format:?}: {body}"
                        );
                    }
                }
            }
        }
    }

    /// A member a pass-through rewrites is taken from the parsed body: one left unparsed
    /// there would be dropped from what is forwarded.
    #[test]
    fn what_a_pass_through_rewrites_is_never_left_unparsed() {
        for format in Format::ALL {
            let dialect = dialect(format);
            let edit = PassThrough {
                model: "m",
                shared: true,
                stream: true,
                cap: Some(1),
                newer_cap_name: true,
                searches_anyway: true,
            };
            let rewritten = dialect
                .pass_through_members(&edit)
                .iter()
                .chain(super::super::anthropic::VERTEX_MEMBERS)
                .chain(&["model", "stream"]);
            for name in rewritten {
                assert!(
                    !dialect.forwarded_unread().contains(name),
                    "{format:?} rewrites '{name}'"
                );
            }
        }
    }

    #[test]
    fn every_format_has_its_own_dialect() {
        for format in Format::ALL {
            assert_eq!(dialect(format).format(), format);
        }
        assert_eq!(dialect(Format::Anthropic).auth(), Auth::Header("x-api-key"));
        assert_eq!(
            dialect(Format::Gemini).auth(),
            Auth::Header("x-goog-api-key")
        );
        assert_eq!(dialect(Format::Cohere).auth(), Auth::Bearer);
        assert_eq!(
            dialect(Format::Bedrock).stream_media_type(),
            "application/vnd.amazon.eventstream"
        );
        assert_eq!(
            dialect(Format::OpenAi).stream_media_type(),
            "text/event-stream"
        );
    }
}
