//! The OpenAI path's scenarios, chosen by the requested model: failures (`fail-500`,
//! `fail-429`, `missing`, `bad-request`), answers that are not answers (`garbage-html`,
//! `garbage-json`, `garbage-gzip`), timing (`slow` answers after a second, `very-slow` after
//! five; `stream-slow` paces its events 400 ms apart, `stream-long` streams 200 events 20 ms
//! apart; `stream-stall` goes silent after one event, `stream-break` breaks after one), and
//! providers' own stream shapes (`groq-stream`, `deepseek-stream`, `perplexity-stream`,
//! `quirky`), each as the provider's API reference shows it.

use std::time::Duration;

use serde_json::{Value, json};

use super::fake_providers::{Answers, Reply, Seen, StreamEnd};

fn error(status: u16, message: &str, kind: &str) -> Reply {
    Reply::Json(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
    )
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

fn text(model: &str, text: &str) -> String {
    chunk(model, json!({"content": text}), None)
}

fn completion(model: &str, answers: &Answers, content: &str) -> Reply {
    let (input, output) = (answers.prompt_tokens, answers.completion_tokens);
    Reply::Json(
        200,
        json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}}),
    )
}

/// The scenario the request's model names, if it names one.
pub fn openai_scenario(seen: &Seen, answers: &Answers) -> Option<Reply> {
    let model = seen.body["model"].as_str().unwrap_or_default().to_owned();
    let content = answers.text.unwrap_or("ok");
    let reply = match model.as_str() {
        "fail-500" => error(500, "boom", "server_error"),
        "fail-429" => Reply::Raw {
            status: 429,
            content_type: "application/json",
            extra: "retry-after: 1\r\n",
            body: json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": null}})
                .to_string()
                .into_bytes(),
        },
        "missing" => error(
            404,
            "The model `missing` does not exist",
            "invalid_request_error",
        ),
        "bad-request" => error(400, "temperature must be <= 2", "invalid_request_error"),
        "quirky" => Reply::Json(
            200,
            json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok", "reasoning_content": "thinking..."}, "finish_reason": "stop"}],
                "citations": ["https://example.com/a"],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
                "x_groq": {"id": "req_1", "usage": {"total_tokens": 9}}
            }),
        ),
        "slow" => Reply::After(
            Duration::from_secs(1),
            Box::new(completion(&model, answers, content)),
        ),
        "very-slow" => Reply::After(
            Duration::from_secs(5),
            Box::new(completion(&model, answers, content)),
        ),
        "groq-stream" | "deepseek-stream" | "perplexity-stream" => {
            // The last chunk of each provider's stream, as its API reference shows it.
            let last = match model.as_str() {
                "groq-stream" => json!({"id": "chatcmpl-g", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "x_groq": {"id": "req_01", "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}}),
                "deepseek-stream" => json!({"id": "d", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": {"reasoning_content": "step 1", "content": null}, "finish_reason": null}]}),
                _ => json!({"id": "p", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "citations": ["https://example.com/source"],
                    "choices": [{"index": 0, "delta": {"content": "cited"}, "finish_reason": "stop"}]}),
            };
            Reply::Stream {
                events: vec![
                    text(&model, "hi "),
                    format!("data: {last}\n\n"),
                    "data: [DONE]\n\n".to_owned(),
                ],
                reset: false,
            }
        }
        "stream-ok" | "stream-slow" | "stream-break" | "stream-stall" => {
            let mut events: Vec<String> = ["one ", "two ", "three"]
                .iter()
                .map(|word| text(&model, word))
                .collect();
            events.push("data: [DONE]\n\n".to_owned());
            let (pace, end) = match model.as_str() {
                "stream-slow" => (Duration::from_millis(400), StreamEnd::Clean),
                "stream-break" => {
                    events.truncate(1);
                    (Duration::ZERO, StreamEnd::Reset)
                }
                "stream-stall" => {
                    events.truncate(1);
                    (Duration::ZERO, StreamEnd::Stall)
                }
                _ => (Duration::ZERO, StreamEnd::Clean),
            };
            Reply::Paced { events, pace, end }
        }
        "stream-long" => {
            let mut events = vec![chunk(&model, json!({"role": "assistant", "content": ""}), None)];
            events.extend((0..200).map(|_| text(&model, content)));
            events.push(chunk(&model, json!({}), Some("stop")));
            if seen.body["stream_options"]["include_usage"] == Value::Bool(true) {
                let (input, output) = (answers.prompt_tokens, answers.completion_tokens);
                let usage = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [], "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}});
                events.push(format!("data: {usage}\n\n"));
            }
            events.push("data: [DONE]\n\n".to_owned());
            Reply::Paced {
                events,
                pace: Duration::from_millis(20),
                end: StreamEnd::Clean,
            }
        }
        // Answers that are not answers (issue #18, leak 7): a proxy's HTML page, JSON cut
        // short, and a gzip body nobody declared.
        "garbage-html" => Reply::Raw {
            status: 200,
            content_type: "text/html",
            extra: "",
            body: b"<html><body>502 Bad Gateway</body></html>".to_vec(),
        },
        "garbage-json" => Reply::Raw {
            status: 200,
            content_type: "application/json",
            extra: "",
            body: br#"{"id": "chatcmpl-fake", "choices": [{"index": 0, "mess"#.to_vec(),
        },
        "garbage-gzip" => Reply::Raw {
            status: 200,
            content_type: "application/json",
            extra: "",
            body: vec![0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03],
        },
        _ => return None,
    };
    Some(reply)
}
