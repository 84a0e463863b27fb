//! A fake of OpenAI's Responses API (`POST /v1/responses`), from the API reference, behind the
//! same listener as the other fakes ([`super::fake_providers`]). It checks what arrived the way
//! OpenAI does: a bearer key, `input` as a string or items, `max_output_tokens` of at least 16,
//! `previous_response_id` naming a response it stored (it stores none), function tools of the
//! flat Responses shape.
//!
//! Behaviour, as the chat fakes': with function tools and no `function_call_output` in the
//! input yet it calls the first tool twice (Paris and Berlin); a shell tool as Codex CLI
//! declares it (`shell`, `shell_command`, `exec_command`, or `local_shell`) is called once to
//! run `echo dgidgi-codex-ok`; otherwise it answers "echo: <last user text or tool output>".
//! `text.format` json_schema answers an example of the schema. `*-reset` breaks the stream,
//! `*-midfail` ends it with `response.failed`.

use serde_json::{Value, json};

use super::fake_providers::{KEY, Reply, Seen, example_of};

/// The command the fake asks a coding agent's shell tool to run.
pub const CODEX_COMMAND: &str = "echo dgidgi-codex-ok";

fn error(status: u16, message: &str, param: Option<&str>) -> Reply {
    Reply::Json(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}}),
    )
}

/// The text of an input item's content (a string, or text parts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The call the fake makes: (tool name, arguments) per call.
fn calls(body: &Value, answered: bool) -> Vec<(String, String)> {
    if answered {
        return Vec::new();
    }
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    for tool in &tools {
        let name = tool["name"].as_str().unwrap_or_default();
        match (tool["type"].as_str(), name) {
            (Some("function"), "shell") => {
                let args = json!({"command": ["bash", "-lc", CODEX_COMMAND]});
                return vec![(name.to_owned(), args.to_string())];
            }
            (Some("function"), "shell_command") => {
                let args = json!({"command": CODEX_COMMAND});
                return vec![(name.to_owned(), args.to_string())];
            }
            (Some("function"), "exec_command") => {
                let args = json!({"cmd": CODEX_COMMAND});
                return vec![(name.to_owned(), args.to_string())];
            }
            _ => {}
        }
    }
    match tools.iter().find(|t| t["type"] == "function") {
        Some(tool) => {
            let name = tool["name"].as_str().unwrap_or_default().to_owned();
            vec![
                (name.clone(), "{\"city\":\"Paris\"}".to_owned()),
                (name, "{\"city\":\"Berlin\"}".to_owned()),
            ]
        }
        None => Vec::new(),
    }
}

/// `POST /v1/responses`.
pub fn responses(seen: &Seen) -> Reply {
    if seen.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {KEY}")) {
        return Reply::Json(
            401,
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        );
    }
    let body = &seen.body;
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if let Some(max) = body.get("max_output_tokens").and_then(Value::as_u64)
        && max < 16
    {
        return error(
            400,
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.",
            Some("max_output_tokens"),
        );
    }
    if let Some(id) = body["previous_response_id"].as_str() {
        return error(
            404,
            &format!("Previous response with id '{id}' not found."),
            Some("previous_response_id"),
        );
    }
    for tool in body["tools"].as_array().into_iter().flatten() {
        if tool["type"] == "function" && tool.get("function").is_some() {
            return error(
                400,
                "Missing required parameter: 'tools[0].name'.",
                Some("tools[0].name"),
            );
        }
    }
    let items: Vec<Value> = match &body["input"] {
        Value::String(text) => vec![json!({"role": "user", "content": text})],
        Value::Array(items) => items.clone(),
        _ => return error(400, "Missing required parameter: 'input'.", Some("input")),
    };
    let answered = items.iter().any(|i| i["type"] == "function_call_output");
    let text = items
        .iter()
        .rev()
        .find_map(|item| match item["type"].as_str() {
            Some("function_call_output") => Some(text_of(&item["output"])),
            None | Some("message") if item["role"] == "user" => Some(text_of(&item["content"])),
            _ => None,
        })
        .unwrap_or_default();
    let calls = calls(body, answered);
    let reply = match body.pointer("/text/format") {
        Some(format) if format["type"] == "json_schema" => {
            example_of(&format["schema"]).to_string()
        }
        _ => format!("echo: {text}"),
    };
    let usage = json!({"input_tokens": 11, "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 17});
    let mut output: Vec<Value> = Vec::new();
    if calls.is_empty() {
        output.push(json!({"type": "message", "id": "msg_fake01", "status": "completed",
            "role": "assistant", "content": [{"type": "output_text", "text": reply, "annotations": []}]}));
    }
    for (index, (name, arguments)) in calls.iter().enumerate() {
        output.push(
            json!({"type": "function_call", "id": format!("fc_fake0{index}"),
            "call_id": format!("call_fake0{index}"), "name": name, "arguments": arguments,
            "status": "completed"}),
        );
    }
    let response = |status: &str, output: &[Value], usage: &Value| {
        json!({"id": "resp_fake01", "object": "response", "created_at": 1, "status": status,
            "error": null, "incomplete_details": null, "instructions": body["instructions"],
            "max_output_tokens": body["max_output_tokens"], "model": model, "output": output,
            "parallel_tool_calls": true, "previous_response_id": null,
            "store": body.get("store").cloned().unwrap_or(json!(true)),
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": body["tools"].as_array().cloned().unwrap_or_default(), "top_p": 1.0,
            "truncation": "disabled", "usage": usage, "metadata": {}})
    };
    if body["stream"] != true {
        return Reply::Json(200, response("completed", &output, &usage));
    }
    let mut sequence = 0u64;
    let mut events = Vec::new();
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        events.push(format!("event: {kind}\ndata: {data}\n\n"));
    };
    event(
        "response.created",
        json!({"response": response("in_progress", &[], &Value::Null)}),
    );
    event(
        "response.in_progress",
        json!({"response": response("in_progress", &[], &Value::Null)}),
    );
    for (index, item) in output.iter().enumerate() {
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        if item["type"] == "message" {
            added["content"] = json!([]);
            event(
                "response.output_item.added",
                json!({"output_index": index, "item": added}),
            );
            event(
                "response.content_part.added",
                json!({"item_id": item["id"], "output_index": index,
                "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            for piece in reply.split_inclusive(' ') {
                event(
                    "response.output_text.delta",
                    json!({"item_id": item["id"],
                    "output_index": index, "content_index": 0, "delta": piece}),
                );
            }
            if model.ends_with("-midfail") {
                let mut failed = response("failed", &[], &usage);
                failed["error"] =
                    json!({"code": "server_error", "message": "The model failed mid-answer."});
                event("response.failed", json!({"response": failed}));
                return Reply::Stream {
                    events,
                    reset: false,
                };
            }
            if model.ends_with("-reset") {
                return Reply::Stream {
                    events,
                    reset: true,
                };
            }
            event(
                "response.output_text.done",
                json!({"item_id": item["id"], "output_index": index,
                "content_index": 0, "text": reply}),
            );
            event(
                "response.content_part.done",
                json!({"item_id": item["id"], "output_index": index,
                "content_index": 0, "part": item["content"][0]}),
            );
        } else {
            added["arguments"] = json!("");
            event(
                "response.output_item.added",
                json!({"output_index": index, "item": added}),
            );
            let arguments = item["arguments"].as_str().unwrap_or_default();
            let (a, b) = arguments.split_at(arguments.len() / 2);
            for piece in [a, b] {
                event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item["id"],
                    "output_index": index, "delta": piece}),
                );
            }
            event(
                "response.function_call_arguments.done",
                json!({"item_id": item["id"],
                "output_index": index, "arguments": arguments}),
            );
        }
        event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }
    event(
        "response.completed",
        json!({"response": response("completed", &output, &usage)}),
    );
    Reply::Stream {
        events,
        reset: false,
    }
}
