//! Property tests: a tool-call conversation translated OpenAI → X → OpenAI keeps its call ids,
//! function names and arguments, for X = Anthropic (requests and responses both ways), Gemini
//! (which has no ids: the gateway derives them and maps results back by name) and Cohere.

use dgidgi::formats::{anthropic, cohere, gemini};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// One tool call: id, function name, JSON arguments.
type Call = (String, String, Value);

fn call() -> impl Strategy<Value = Call> {
    (
        "[a-zA-Z0-9_]{1,24}",
        "[a-z][a-z0-9_]{0,20}",
        proptest::collection::btree_map(
            "[a-z]{1,8}",
            prop_oneof![
                any::<i32>().prop_map(Value::from),
                "[ -~é]{0,16}".prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
            ],
            0..4,
        ),
    )
        .prop_map(|(id, name, args)| {
            (
                format!("call_{id}"),
                name,
                Value::Object(args.into_iter().collect()),
            )
        })
}

fn calls() -> impl Strategy<Value = Vec<Call>> {
    proptest::collection::vec(call(), 1..4).prop_map(|mut calls| {
        // Ids are unique within one answer.
        for (n, call) in calls.iter_mut().enumerate() {
            call.0 = format!("{}_{n}", call.0);
        }
        calls
    })
}

fn conversation(calls: &[Call]) -> Map<String, Value> {
    let mut messages = vec![
        json!({"role": "system", "content": "sys"}),
        json!({"role": "user", "content": "go"}),
        json!({"role": "assistant", "content": null, "tool_calls": calls.iter().map(|(id, name, args)| json!({
            "id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})).collect::<Vec<_>>()}),
    ];
    for (id, _, _) in calls {
        messages.push(
            json!({"role": "tool", "tool_call_id": id, "content": format!("result of {id}")}),
        );
    }
    let tools: Vec<Value> = calls
        .iter()
        .map(|(_, name, _)| json!({"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}))
        .collect();
    json!({"model": "m", "messages": messages, "tools": tools})
        .as_object()
        .unwrap()
        .clone()
}

/// The (id, name, arguments) of the assistant's tool calls and the ids the tool results answer.
fn calls_of(request: &Map<String, Value>) -> (Vec<Call>, Vec<String>) {
    let messages = request["messages"].as_array().unwrap();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    for message in messages {
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            calls.push((
                call["id"].as_str().unwrap().to_owned(),
                call["function"]["name"].as_str().unwrap().to_owned(),
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap(),
            ));
        }
        if message["role"] == "tool" {
            results.push(message["tool_call_id"].as_str().unwrap().to_owned());
        }
    }
    (calls, results)
}

proptest! {
    #[test]
    fn openai_anthropic_openai_requests_keep_tool_calls(calls in calls()) {
        let request = conversation(&calls);
        let there = anthropic::request_from_openai(&request, 100).unwrap();
        let back = anthropic::request_to_openai(&there).unwrap();
        let (got, results) = calls_of(&back);
        prop_assert_eq!(&got, &calls);
        let ids: Vec<String> = calls.iter().map(|c| c.0.clone()).collect();
        prop_assert_eq!(results, ids);
    }

    #[test]
    fn openai_anthropic_openai_responses_keep_tool_calls(calls in calls()) {
        let response = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": calls.iter().map(|(id, name, args)| json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": args.to_string()}})).collect::<Vec<_>>()}}]});
        let there = anthropic::response_from_openai(&response).unwrap();
        let back = anthropic::response_to_openai(&there, 1).unwrap();
        prop_assert_eq!(&back["choices"][0]["finish_reason"], "tool_calls");
        let message = back["choices"][0]["message"].as_object().unwrap().clone();
        let (got, _) = calls_of(&json!({"messages": [message]}).as_object().unwrap().clone());
        prop_assert_eq!(got, calls);
    }

    #[test]
    fn gemini_calls_get_ids_that_map_back_to_their_functions(calls in calls()) {
        // Gemini answers with calls that have no ids ...
        let response = json!({"responseId": "r1", "candidates": [{"index": 0, "finishReason": "STOP",
            "content": {"role": "model", "parts": calls.iter().map(|(_, name, args)|
                json!({"functionCall": {"name": name, "args": args}})).collect::<Vec<_>>()}}]});
        let openai = gemini::response_to_openai(&response, "m", 1).unwrap();
        let message = openai["choices"][0]["message"].as_object().unwrap().clone();
        let (given, _) = calls_of(&json!({"messages": [message]}).as_object().unwrap().clone());
        // ... the gateway gives them distinct, deterministic ids ...
        let ids: std::collections::BTreeSet<&String> = given.iter().map(|c| &c.0).collect();
        prop_assert_eq!(ids.len(), calls.len());
        prop_assert_eq!(gemini::response_to_openai(&response, "m", 1).unwrap(), openai.clone());
        // ... and a conversation using those ids goes back with each result named after its call.
        let request = conversation(&given);
        let there = gemini::request_from_openai(&request).unwrap();
        let contents = there["contents"].as_array().unwrap();
        let sent: Vec<(String, Value)> = contents[1]["parts"].as_array().unwrap().iter()
            .map(|p| (p["functionCall"]["name"].as_str().unwrap().to_owned(), p["functionCall"]["args"].clone()))
            .collect();
        let expected: Vec<(String, Value)> = calls.iter().map(|c| (c.1.clone(), c.2.clone())).collect();
        prop_assert_eq!(sent, expected);
        let answered: Vec<&str> = contents[2]["parts"].as_array().unwrap().iter()
            .map(|p| p["functionResponse"]["name"].as_str().unwrap()).collect();
        let names: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
        prop_assert_eq!(answered, names);
    }

    #[test]
    fn openai_cohere_openai_keeps_tool_calls(calls in calls()) {
        let request = conversation(&calls);
        let there = cohere::request_from_openai(&request).unwrap();
        let (sent, results) = calls_of(&there);
        prop_assert_eq!(&sent, &calls);
        let ids: Vec<String> = calls.iter().map(|c| c.0.clone()).collect();
        prop_assert_eq!(results, ids);
        let response = json!({"id": "c1", "finish_reason": "TOOL_CALL", "message": {"role": "assistant",
            "tool_calls": there["messages"][2]["tool_calls"].clone()}});
        let back = cohere::response_to_openai(&response, "m", 1).unwrap();
        let message = back["choices"][0]["message"].as_object().unwrap().clone();
        let (got, _) = calls_of(&json!({"messages": [message]}).as_object().unwrap().clone());
        prop_assert_eq!(got, calls);
    }
}
