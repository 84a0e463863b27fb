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

/// Checks what every target reads: a model, an input, a `dimensions` and an
/// `encoding_format` it understands.
pub fn check(request: &Map<String, Value>) -> Result<(), FormatError> {
    match request.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= 2048 => {}
        _ => {
            return Err(FormatError::invalid(
                "'input' must be a string or an array of 1 to 2048 inputs",
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
    let requests: Vec<Value> = texts(request)?
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
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("texts".into(), json!(texts(request)?));
    out.insert("input_type".into(), json!(input_type));
    out.insert("embedding_types".into(), json!(["float"]));
    if let Some(dimensions) = dimensions(request) {
        out.insert("output_dimension".into(), json!(dimensions));
    }
    Ok(out)
}

/// The usage of an OpenAI-format embeddings answer (`usage.prompt_tokens`).
pub fn usage_from_openai(answer: &[u8]) -> Option<Usage> {
    let value: Value = serde_json::from_slice(answer).ok()?;
    let input = value.pointer("/usage/prompt_tokens")?.as_u64()?;
    Some(Usage {
        input_tokens: input,
        ..Usage::default()
    })
}

/// Gemini answer → OpenAI answer. Gemini reports no usage: `estimated_input` stands for it.
pub fn response_from_gemini(
    answer: &[u8],
    request: &Map<String, Value>,
    model: &str,
    estimated_input: u64,
) -> Result<(Vec<u8>, Usage), FormatError> {
    let value: Value = serde_json::from_slice(answer)
        .map_err(|_| FormatError::upstream("the embeddings answer is not JSON"))?;
    let vectors: Vec<&Vec<Value>> = value
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::upstream("the answer has no embeddings"))?
        .iter()
        .map(|e| e.get("values").and_then(Value::as_array))
        .collect::<Option<_>>()
        .ok_or_else(|| FormatError::upstream("an embedding has no values"))?;
    let usage = Usage {
        input_tokens: estimated_input,
        ..Usage::default()
    };
    Ok((openai_answer(&vectors, request, model, &usage)?, usage))
}

/// Cohere answer → OpenAI answer.
pub fn response_from_cohere(
    answer: &[u8],
    request: &Map<String, Value>,
    model: &str,
    estimated_input: u64,
) -> Result<(Vec<u8>, Usage), FormatError> {
    let value: Value = serde_json::from_slice(answer)
        .map_err(|_| FormatError::upstream("the embeddings answer is not JSON"))?;
    let vectors: Vec<&Vec<Value>> = value
        .pointer("/embeddings/float")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::upstream("the answer has no float embeddings"))?
        .iter()
        .map(Value::as_array)
        .collect::<Option<_>>()
        .ok_or_else(|| FormatError::upstream("an embedding is not an array"))?;
    let input = value
        .pointer("/meta/billed_units/input_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(estimated_input);
    let usage = Usage {
        input_tokens: input,
        ..Usage::default()
    };
    Ok((openai_answer(&vectors, request, model, &usage)?, usage))
}

/// Writes OpenAI's answer for `vectors`, as floats or base64 as the request asked.
fn openai_answer(
    vectors: &[&Vec<Value>],
    request: &Map<String, Value>,
    model: &str,
    usage: &Usage,
) -> Result<Vec<u8>, FormatError> {
    let base64 = encoding(request) == Some("base64");
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, values)| {
            let embedding = if base64 {
                let mut packed = Vec::with_capacity(values.len() * 4);
                for value in values.iter() {
                    let number = value.as_f64().ok_or_else(|| {
                        FormatError::upstream("an embedding value is not a number")
                    })?;
                    // OpenAI's packing: little-endian f32 (the precision its floats have).
                    #[allow(clippy::cast_possible_truncation)]
                    packed.extend_from_slice(&(number as f32).to_le_bytes());
                }
                Value::String(base64::engine::general_purpose::STANDARD.encode(packed))
            } else {
                Value::Array(values.to_vec())
            };
            Ok(json!({"object": "embedding", "index": index, "embedding": embedding}))
        })
        .collect::<Result<Vec<_>, FormatError>>()?;
    let answer = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    });
    serde_json::to_vec(&answer)
        .map_err(|_| FormatError::upstream("the answer could not be written"))
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
    fn answers_come_back_as_floats_or_openais_base64() {
        let answer = br#"{"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2.0]}]}"#;
        let floats = object(json!({"model": "m", "input": ["a", "b"]}));
        let (out, usage) = response_from_gemini(answer, &floats, "g", 7).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["data"][1]["embedding"], json!([0.25, 2.0]));
        assert_eq!(out["data"][1]["index"], 1);
        assert_eq!(out["usage"]["prompt_tokens"], 7);
        assert_eq!(usage.input_tokens, 7);
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
