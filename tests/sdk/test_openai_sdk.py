"""The official `openai` Python SDK, unchanged, against a running dgidgi gateway.

Run by tests/sdk_clients.rs, which starts `dgidgi up` on the quickstart and passes the base URL
and an access key in DGIDGI_BASE_URL and DGIDGI_KEY.
"""

import os

import openai
import pytest

import chat_stream  # tests/sdk/chat_stream.py (pytest puts this directory on sys.path)

BASE_URL = os.environ["DGIDGI_BASE_URL"] + "/v1"
KEY = os.environ["DGIDGI_KEY"]


@pytest.fixture()
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0)


def test_chat_completion(client):
    completion = client.chat.completions.create(
        model="mock-fast", messages=[{"role": "user", "content": "Hello SDK"}]
    )
    assert completion.object == "chat.completion"
    assert "Hello SDK" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_response_headers_say_what_served(client):
    # "fast" is routed to the mock by the quickstart's paid-tiers policy (acme is on pro).
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-dgidgi-source"] == "platform"
    assert raw.headers["x-dgidgi-provider"] == "mock"
    assert raw.headers["x-dgidgi-model"] == "mock-fast"
    assert raw.headers["x-dgidgi-fallback"] == "0"
    assert raw.parse().choices[0].message.content


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="mock-fast",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = chat_stream.collect(stream)
    assert "stream please" in text
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > 0


def test_tool_calls(client):
    completion = client.chat.completions.create(
        model="mock-smart",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"


def test_models_list(client):
    ids = {model.id for model in client.models.list()}
    assert {"mock-fast", "mock-smart", "gpt-4o"} <= ids


def test_models_retrieve(client):
    # Issue #19: GET /v1/models/{id} for a model the tenant may use; 404 for any other.
    model = client.models.retrieve("mock-fast")
    assert model.id == "mock-fast"
    assert model.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_wrong_key_is_an_authentication_error():
    bad = openai.OpenAI(base_url=BASE_URL, api_key="dgk_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as error:
        bad.chat.completions.create(model="mock-fast", messages=[{"role": "user", "content": "x"}])
    assert error.value.code == "invalid_api_key"


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="mock/no-such-model", messages=[{"role": "user", "content": "x"}])
    assert error.value.code == "model_not_found"


def test_escalation_is_permission_denied(client):
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-dgidgi-provider": "my-openai"},
        )


def test_bad_request(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mock-fast", messages=[])
