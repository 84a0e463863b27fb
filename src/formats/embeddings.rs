//! Embeddings in OpenAI's format (`POST /v1/embeddings`), the canonical form, and their
//! translation to Gemini's `batchEmbedContents` and Cohere's embed v2. OpenAI-format upstreams
//! (OpenAI, Mistral, OpenAI-compatible servers, Ollama) take the request as sent.
//!
//! `encoding_format: "base64"` is OpenAI's packing of each vector as little-endian `f32`s in
//! base64; a translated answer is packed the same way, so a client gets what it asked for
//! whatever served it.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::FormatError;
use crate::usage::Usage;

/// Most inputs one Gemini `batchEmbedContents` call takes.
pub const GEMINI_MAX_INPUTS: usize = 100;
/// Most texts one Cohere embed call takes.
pub const COHERE_MAX_INPUTS: usize = 96;

/// Cohere's embed v2 requires an `input_type`; a request says which with
/// `x-dgidgi-cohere-input-type` or this default (what an index stores).
pub const DEFAULT_COHERE_INPUT_TYPE: &str = "search_document";

/// The texts of an OpenAI embeddings request's `input` (a string or an array of strings). Token
/// arrays are OpenAI's own (its tokenizer's ids): a target of another format cannot read them.
pub fn texts(request: &Map<String, Value>) -> Result<Vec<&str>, FormatError> {
    match request.get("input") {
        Some(Value::String(text)) => Ok(vec![text.as_str()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_str().ok_or_else(|| {
                    FormatError::unsupported(
                        "token arrays as 'input' can only be sent to an OpenAI-format model",
                    )
                })
            })
            .collect(),
        _ => Err(FormatError::invalid(
            "'input' must be a string or a non-empty array of strings",
        )),
    }
}

/// How many token ids the input gives as arrays of integers (OpenAI's pre-tokenized input).
/// Each is a token whatever its digits: the reservation, which reads about four bytes a token,
/// counts them apart (`[1,2,3]` is two bytes a token).
pub fn token_ids(request: &Map<String, Value>) -> usize {
    let Some(Value::Array(items)) = request.get("input") else {
        return 0;
    };
    let tokens = |item: &Value| match item {
        Value::Number(_) => 1,
        Value::Array(tokens) => tokens.len(),
        _ => 0,
    };
    items.iter().map(tokens).sum()
}

/// Checks what every target reads: a model, an input, a `dimensions` and an
/// `encoding_format` it understands.
pub fn check(request: &Map<String, Value>) -> Result<(), FormatError> {
    match request.get("input") {
        Some(Value::String(text)) if !text.is_empty() => {}
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= 2048 => {
            // As OpenAI does: an empty input is an error, not a zero vector.
            let empty = |item: &Value| match item {
                Value::String(text) => text.is_empty(),
                Value::Array(tokens) => tokens.is_empty(),
                _ => false,
            };
            if items.iter().any(empty) {
                return Err(FormatError::invalid("'input' must not hold an empty input"));
            }
        }
        _ => {
            return Err(FormatError::invalid(
                "'input' must be a non-empty string or an array of 1 to 2048 inputs",
            ));
        }
    }
    if let Some(dimensions) = request.get("dimensions").filter(|d| !d.is_null())
        && dimensions.as_u64().is_none_or(|d| d == 0)
    {
        return Err(FormatError::invalid(
            "'dimensions' must be a positive integer",
        ));
    }
    match encoding(request) {
        Some("float" | "base64") | None => Ok(()),
        Some(_) => Err(FormatError::invalid(
            "'encoding_format' must be \"float\" or \"base64\"",
        )),
    }
}

fn encoding(request: &Map<String, Value>) -> Option<&str> {
    request.get("encoding_format").and_then(Value::as_str)
}

fn dimensions(request: &Map<String, Value>) -> Option<u64> {
    request.get("dimensions").and_then(Value::as_u64)
}

/// OpenAI request → Gemini `batchEmbedContents` body.
pub fn request_to_gemini(
    request: &Map<String, Value>,
    model: &str,
) -> Result<Map<String, Value>, FormatError> {
    let dimensions = dimensions(request);
    let texts = texts(request)?;
    if texts.len() > GEMINI_MAX_INPUTS {
        return Err(FormatError::unsupported(format!(
            "a Gemini model embeds at most {GEMINI_MAX_INPUTS} inputs a request"
        )));
    }
    let requests: Vec<Value> = texts
        .into_iter()
        .map(|text| {
            let mut one =
                json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
            if let Some(dimensions) = dimensions {
                one["outputDimensionality"] = json!(dimensions);
            }
            one
        })
        .collect();
    let mut out = Map::new();
    out.insert("requests".into(), Value::Array(requests));
    Ok(out)
}

/// OpenAI request → Cohere embed v2 body.
pub fn request_to_cohere(
    request: &Map<String, Value>,
    model: &str,
    input_type: &str,
) -> Result<Map<String, Value>, FormatError> {
    let texts = texts(request)?;
    if texts.len() > COHERE_MAX_INPUTS {
        return Err(FormatError::unsupported(format!(
            "a Cohere model embeds at most {COHERE_MAX_INPUTS} inputs a request"
        )));
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("texts".into(), json!(texts));
    out.insert("input_type".into(), json!(input_type));
    out.insert("embedding_types".into(), json!(["float"]));
    if let Some(dimensions) = dimensions(request) {
        out.insert("output_dimension".into(), json!(dimensions));
    }
    Ok(out)
}

/// The usage of an OpenAI-format embeddings answer (`usage.prompt_tokens`), read without
/// building the vectors (an answer may be tens of MiB of floats).
pub fn usage_from_openai(answer: &[u8]) -> Option<Usage> {
    #[derive(serde::Deserialize)]
    struct Answer {
        usage: Option<Counted>,
    }
    #[derive(serde::Deserialize)]
    struct Counted {
        prompt_tokens: u64,
    }
    let answer: Answer = serde_json::from_slice(answer).ok()?;
    Some(Usage {
        input_tokens: answer.usage?.prompt_tokens,
        ..Usage::default()
    })
}

/// Gemini answer → OpenAI answer, with what Gemini said it used: nothing (it reports no usage;
/// the caller charges its reservation, marked estimated). `estimated_input` is what the answer
/// tells the client.
pub fn response_from_gemini(
    answer: &[u8],
    request: &Map<String, Value>,
    model: &str,
    estimated_input: u64,
) -> Result<(Vec<u8>, Option<Usage>), FormatError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        embeddings: Vec<Vector>,
    }
    #[derive(serde::Deserialize)]
    struct Vector {
        values: Vec<f64>,
    }
    let answer: Answer = serde_json::from_slice(answer)
        .map_err(|_| FormatError::upstream("the answer has no embeddings"))?;
    let vectors: Vec<Vec<f64>> = answer.embeddings.into_iter().map(|v| v.values).collect();
    let out = openai_answer(&vectors, request, model, estimated_input)?;
    Ok((out, None))
}

/// Cohere answer → OpenAI answer, with the input tokens it billed.
pub fn response_from_cohere(
    answer: &[u8],
    request: &Map<String, Value>,
    model: &str,
) -> Result<(Vec<u8>, Option<Usage>), FormatError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        embeddings: Embeddings,
        meta: Option<Meta>,
    }
    #[derive(serde::Deserialize)]
    struct Embeddings {
        float: Vec<Vec<f64>>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        billed_units: Option<Billed>,
    }
    #[derive(serde::Deserialize)]
    struct Billed {
        input_tokens: Option<u64>,
    }
    let answer: Answer = serde_json::from_slice(answer)
        .map_err(|_| FormatError::upstream("the answer has no float embeddings"))?;
    let billed = answer
        .meta
        .and_then(|m| m.billed_units)
        .and_then(|b| b.input_tokens);
    let out = openai_answer(
        &answer.embeddings.float,
        request,
        model,
        billed.unwrap_or(0),
    )?;
    let usage = billed.map(|input_tokens| Usage {
        input_tokens,
        ..Usage::default()
    });
    Ok((out, usage))
}

/// Writes OpenAI's answer for `vectors` (one per input, checked), as floats or base64 as the
/// request asked.
fn openai_answer(
    vectors: &[Vec<f64>],
    request: &Map<String, Value>,
    model: &str,
    input_tokens: u64,
) -> Result<Vec<u8>, FormatError> {
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        object: &'static str,
        data: Vec<Datum>,
        model: &'a str,
        usage: Counted,
    }
    #[derive(serde::Serialize)]
    struct Datum {
        object: &'static str,
        index: usize,
        embedding: Embedding,
    }
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Embedding {
        Floats(Vec<f64>),
        Packed(String),
    }
    #[derive(serde::Serialize)]
    struct Counted {
        prompt_tokens: u64,
        total_tokens: u64,
    }
    let inputs = texts(request)?.len();
    if vectors.len() != inputs {
        return Err(FormatError::upstream(format!(
            "{} embeddings came back for {inputs} inputs",
            vectors.len()
        )));
    }
    let base64 = encoding(request) == Some("base64");
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, values)| {
            let embedding = if base64 {
                // OpenAI's packing: little-endian f32 (the precision its floats have).
                #[allow(clippy::cast_possible_truncation)]
                let packed: Vec<u8> = values
                    .iter()
                    .flat_map(|value| (*value as f32).to_le_bytes())
                    .collect();
                Embedding::Packed(base64::engine::general_purpose::STANDARD.encode(packed))
            } else {
                Embedding::Floats(values.clone())
            };
            Datum {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let answer = Answer {
        object: "list",
        data,
        model,
        usage: Counted {
            prompt_tokens: input_tokens,
            total_tokens: input_tokens,
        },
    };
    serde_json::to_vec(&answer)
        .map_err(|_| FormatError::upstream("the answer could not be written"))
}

/// What an embeddings request is written for.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddingsTarget<'a> {
    /// The model, as the provider names it.
    pub model: &'a str,
    /// Cohere's `input_type` (what the vectors are for).
    pub input_type: &'a str,
}

/// The embeddings endpoint of a wire format that serves one: where it lives, how the OpenAI
/// request a client sent is written for it, and how its answer is read back into OpenAI's
/// shape with the usage it reports. A format without one ([`super::dialect::Dialect::embeddings`]
/// is `None`) serves no embeddings.
pub trait EmbeddingsDialect: Sync {
    /// The URL under a provider's `base` URL (`chat_path`: its type's chat path).
    fn url(&self, base: &str, chat_path: &str, model: &str) -> Option<String>;

    /// The client's request written for the provider.
    fn request(
        &self,
        request: &Map<String, Value>,
        sent: &super::SentBody,
        target: &EmbeddingsTarget<'_>,
    ) -> Result<Vec<u8>, FormatError>;

    /// The provider's answer in OpenAI's shape, and the usage it reported.
    fn answer(
        &self,
        answer: &[u8],
        request: &Map<String, Value>,
        model: &str,
    ) -> Result<(Option<Vec<u8>>, Option<Usage>), FormatError>;
}

/// A translated request as bytes.
fn written(request: Map<String, Value>) -> Result<Vec<u8>, FormatError> {
    serde_json::to_vec(&request)
        .map_err(|_| FormatError::Invalid("the request could not be written".into()))
}

/// OpenAI's `/embeddings`, beside the chat path: the request goes as sent (model aside), the
/// answer comes back as it came.
pub struct OpenAiEmbeddings;

impl EmbeddingsDialect for OpenAiEmbeddings {
    fn url(&self, base: &str, chat_path: &str, _model: &str) -> Option<String> {
        super::openai::beside_chat(base, chat_path, "embeddings")
    }

    fn request(
        &self,
        request: &Map<String, Value>,
        sent: &super::SentBody,
        target: &EmbeddingsTarget<'_>,
    ) -> Result<Vec<u8>, FormatError> {
        let model = Value::String(target.model.to_owned());
        Ok(sent.write_edited(request, &["model"], |json| {
            json.insert("model".into(), model);
        }))
    }

    /// `None`: the answer passes as it came; it must at least be JSON.
    fn answer(
        &self,
        answer: &[u8],
        _request: &Map<String, Value>,
        _model: &str,
    ) -> Result<(Option<Vec<u8>>, Option<Usage>), FormatError> {
        let usage = usage_from_openai(answer);
        if usage.is_none() && serde_json::from_slice::<serde::de::IgnoredAny>(answer).is_err() {
            return Err(FormatError::Upstream(
                "the embeddings answer is not JSON".into(),
            ));
        }
        Ok((None, usage))
    }
}

/// Gemini's `:batchEmbedContents`, per model. Gemini reports no usage: the answer tells the
/// client an estimate, and metering charges the reservation.
pub struct GeminiEmbeddings;

impl EmbeddingsDialect for GeminiEmbeddings {
    fn url(&self, base: &str, chat_path: &str, model: &str) -> Option<String> {
        Some(super::gemini::method_url(
            base,
            chat_path,
            model,
            "batchEmbedContents",
        ))
    }

    fn request(
        &self,
        request: &Map<String, Value>,
        _sent: &super::SentBody,
        target: &EmbeddingsTarget<'_>,
    ) -> Result<Vec<u8>, FormatError> {
        written(request_to_gemini(request, target.model)?)
    }

    fn answer(
        &self,
        answer: &[u8],
        request: &Map<String, Value>,
        model: &str,
    ) -> Result<(Option<Vec<u8>>, Option<Usage>), FormatError> {
        let estimated = texts(request)
            .map(|texts| texts.iter().map(|t| super::estimate::text_tokens(t)).sum())
            .unwrap_or(0);
        response_from_gemini(answer, request, model, estimated)
            .map(|(out, usage)| (Some(out), usage))
    }
}

/// Cohere's `/v2/embed`, with the `input_type` it requires.
pub struct CohereEmbeddings;

impl EmbeddingsDialect for CohereEmbeddings {
    fn url(&self, base: &str, _chat_path: &str, _model: &str) -> Option<String> {
        Some(format!("{base}/v2/embed"))
    }

    fn request(
        &self,
        request: &Map<String, Value>,
        _sent: &super::SentBody,
        target: &EmbeddingsTarget<'_>,
    ) -> Result<Vec<u8>, FormatError> {
        written(request_to_cohere(request, target.model, target.input_type)?)
    }

    fn answer(
        &self,
        answer: &[u8],
        request: &Map<String, Value>,
        model: &str,
    ) -> Result<(Option<Vec<u8>>, Option<Usage>), FormatError> {
        response_from_cohere(answer, request, model).map(|(out, usage)| (Some(out), usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn gemini_and_cohere_requests_carry_every_text_and_the_dimensions() {
        let request = object(json!({"model": "m", "input": ["a", "b"], "dimensions": 256}));
        let gemini = request_to_gemini(&request, "gemini-embedding-001").unwrap();
        assert_eq!(gemini["requests"][1]["content"]["parts"][0]["text"], "b");
        assert_eq!(
            gemini["requests"][0]["model"],
            "models/gemini-embedding-001"
        );
        assert_eq!(gemini["requests"][0]["outputDimensionality"], 256);
        let cohere = request_to_cohere(&request, "embed-v4.0", "search_query").unwrap();
        assert_eq!(cohere["texts"], json!(["a", "b"]));
        assert_eq!(cohere["input_type"], "search_query");
        assert_eq!(cohere["output_dimension"], 256);
        let tokens = object(json!({"model": "m", "input": [[1, 2, 3]]}));
        assert!(matches!(
            request_to_gemini(&tokens, "g"),
            Err(FormatError::Unsupported(_))
        ));
    }

    #[test]
    fn empty_inputs_are_refused_and_token_ids_are_counted() {
        for input in [json!(""), json!([]), json!(["a", ""]), json!([[1], []])] {
            assert!(
                check(&object(json!({"model": "m", "input": input}))).is_err(),
                "{input}"
            );
        }
        assert!(check(&object(json!({"model": "m", "input": [[1, 2], "b"]}))).is_ok());
        assert_eq!(token_ids(&object(json!({"input": [[1, 2, 3], [4]]}))), 4);
        assert_eq!(token_ids(&object(json!({"input": [1, 2, 3]}))), 3);
        assert_eq!(token_ids(&object(json!({"input": ["text"]}))), 0);
    }

    #[test]
    fn answers_come_back_as_floats_or_openais_base64() {
        let answer = br#"{"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2.0]}]}"#;
        let floats = object(json!({"model": "m", "input": ["a", "b"]}));
        let (out, usage) = response_from_gemini(answer, &floats, "g", 7).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["data"][1]["embedding"], json!([0.25, 2.0]));
        assert_eq!(out["data"][1]["index"], 1);
        assert_eq!(out["usage"]["prompt_tokens"], 7);
        // Gemini reports nothing: the reservation (the gateway's estimate) is charged.
        assert_eq!(usage, None);
        // A vector missing is a bad answer, not a short list.
        let one = object(json!({"model": "m", "input": ["a", "b", "c"]}));
        assert!(response_from_gemini(answer, &one, "g", 7).is_err());
        let packed =
            object(json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64"}));
        let (out, _) = response_from_gemini(answer, &packed, "g", 7).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(out["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let first = f32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let second = f32::from_le_bytes(bytes[4..8].try_into().unwrap());
        assert_eq!((first, second), (0.5, -1.0));
    }

    #[test]
    fn bad_requests_are_named() {
        for bad in [
            json!({"model": "m"}),
            json!({"model": "m", "input": []}),
            json!({"model": "m", "input": "a", "dimensions": 0}),
            json!({"model": "m", "input": "a", "encoding_format": "int8"}),
        ] {
            assert!(check(&object(bad.clone())).is_err(), "{bad}");
        }
        assert!(
            check(&object(
                json!({"model": "m", "input": "a", "encoding_format": "base64"})
            ))
            .is_ok()
        );
    }
}
