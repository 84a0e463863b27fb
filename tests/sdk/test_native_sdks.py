"""The official `anthropic` and `openai` Python SDKs, unchanged, against dgidgi in front of
local fakes of the Anthropic, Gemini, Cohere and OpenAI wire formats, and of the clouds
(Azure OpenAI, Vertex AI) in front of them.

Run by tests/sdk_clients.rs, which starts the fakes and the gateway and passes the base URL and
an access key in DGIDGI_BASE_URL and DGIDGI_KEY.
"""

import json
import os

import anthropic
import openai
import pydantic
import pytest

import chat_stream  # tests/sdk/chat_stream.py (pytest puts this directory on sys.path)

BASE_URL = os.environ["DGIDGI_BASE_URL"]
KEY = os.environ["DGIDGI_KEY"]

WEATHER_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
WEATHER_ANTHROPIC = [
    {
        "name": "get_weather",
        "description": "Weather of a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]

# The clouds (tests/common/fake_clouds.rs, fake_bedrock.rs): Azure OpenAI's v1 API, its
# deployment API with an api-version, and with an Entra application's tokens; Vertex AI's
# Gemini and Claude with a service account's tokens; Bedrock's Converse API signed with an
# access key (SigV4), temporary credentials, and a Bedrock API key.
CLOUD_MODELS = [
    "azure/azure-gpt",
    "azure-dated/azure-gpt",
    "azure-entra/azure-gpt",
    "vertex/gemini-vertex",
    "vertex/claude-vertex",
    "bedrock/us.anthropic.claude-fake-v1:0",
    "bedrock-session/amazon.nova-fake-v1",
    "bedrock-key/us.anthropic.claude-fake-v1:0",
]
# The Messages front door in front of an Anthropic upstream (pass-through), an OpenAI-format
# upstream (translated), and the clouds.
MESSAGES_MODELS = ["anthropic/claude-fake", "openai-fake/gpt-fake"] + CLOUD_MODELS
# OpenAI clients in front of the three native formats, and the clouds.
CHAT_MODELS = ["anthropic/claude-fake", "gemini/gemini-fake", "cohere/command-fake"] + CLOUD_MODELS


@pytest.fixture()
def claude():
    return anthropic.Anthropic(base_url=BASE_URL, api_key=KEY, max_retries=0)


@pytest.fixture()
def gpt():
    return openai.OpenAI(base_url=BASE_URL + "/v1", api_key=KEY, max_retries=0)


@pytest.mark.parametrize("model", MESSAGES_MODELS)
def test_anthropic_messages_create(claude, model):
    message = claude.messages.create(
        model=model,
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello sdk"}],
    )
    assert message.type == "message"
    assert message.content[0].text == "echo: hello sdk"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


@pytest.mark.parametrize("model", MESSAGES_MODELS)
def test_anthropic_messages_stream(claude, model):
    with claude.messages.stream(
        model=model,
        max_tokens=100,
        messages=[{"role": "user", "content": "stream sdk"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream sdk"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MESSAGES_MODELS)
@pytest.mark.parametrize("streamed", [False, True])
def test_anthropic_tools_round_trip(claude, model, streamed):
    question = {"role": "user", "content": "weather in Paris and Berlin?"}
    kwargs = dict(model=model, max_tokens=100, tools=WEATHER_ANTHROPIC, messages=[question])
    if streamed:
        with claude.messages.stream(**kwargs) as stream:
            message = stream.get_final_message()
    else:
        message = claude.messages.create(**kwargs)
    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert [use.input["city"] for use in uses] == ["Paris", "Berlin"]
    assert len({use.id for use in uses}) == 2
    results = [
        {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"} for use in uses
    ]
    answer = claude.messages.create(
        model=model,
        max_tokens=100,
        tools=WEATHER_ANTHROPIC,
        messages=[
            question,
            {"role": "assistant", "content": [use.model_dump(exclude_none=True) for use in uses]},
            {"role": "user", "content": results},
        ],
    )
    assert answer.stop_reason == "end_turn"


def test_anthropic_errors_are_anthropic_shaped(claude):
    with pytest.raises(anthropic.NotFoundError) as error:
        claude.messages.create(
            model="nope/nothing", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert error.value.body["type"] == "error"
    assert error.value.body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_openai_chat_create(gpt, model):
    completion = gpt.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    )
    assert completion.choices[0].message.content == "echo: hi"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_openai_chat_stream_with_usage(gpt, model):
    stream = gpt.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = chat_stream.collect(stream)
    assert text == "echo: stream"
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > 0


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("streamed", [False, True])
def test_openai_tools_round_trip(gpt, model, streamed):
    question = {"role": "user", "content": "weather in Paris and Berlin?"}
    if streamed:
        calls = {}
        for chunk in gpt.chat.completions.create(
            model=model, messages=[question], tools=WEATHER_OPENAI, stream=True
        ):
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                entry["id"] = call.id or entry["id"]
                if call.function and call.function.name:
                    entry["name"] = call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
        calls = [calls[i] for i in sorted(calls)]
    else:
        completion = gpt.chat.completions.create(model=model, messages=[question], tools=WEATHER_OPENAI)
        assert completion.choices[0].finish_reason == "tool_calls"
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in completion.choices[0].message.tool_calls
        ]
    assert [json.loads(c["arguments"])["city"] for c in calls] == ["Paris", "Berlin"]
    assert all(c["name"] == "get_weather" and c["id"] for c in calls)
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ],
    }
    results = [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in calls]
    answer = gpt.chat.completions.create(
        model=model, messages=[question, assistant, *results], tools=WEATHER_OPENAI
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content.startswith("echo")


# --- Structured output, token counting, the model list -----------------------------------


class Answer(pydantic.BaseModel):
    """Fields out of alphabetical order: under strict structured outputs the schema's order is
    the order the model writes them in, and the fakes refuse a schema that arrives re-sorted."""

    zeta: str
    alpha: int
    middle: bool


# The OpenAI SDK's strict json_schema to an OpenAI-format upstream (passed as sent) and to an
# Anthropic one (translated to output_config.format) and Gemini's responseJsonSchema.
STRUCTURED_MODELS = ["openai-fake/gpt-fake", "anthropic/claude-fake", "gemini/gemini-fake"]


@pytest.mark.parametrize("model", STRUCTURED_MODELS)
def test_openai_parse_strict_json_schema(gpt, model):
    completion = gpt.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "fill the form"}],
        response_format=Answer,
    )
    message = completion.choices[0].message
    assert message.parsed == Answer(zeta="text", alpha=7, middle=True)
    # Written in the schema's own order.
    assert list(json.loads(message.content)) == ["zeta", "alpha", "middle"]


def test_anthropic_structured_output_to_an_openai_upstream(claude):
    schema = Answer.model_json_schema()
    schema["additionalProperties"] = False
    message = claude.messages.create(
        model="openai-fake/gpt-fake",
        max_tokens=200,
        messages=[{"role": "user", "content": "fill the form"}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
    )
    assert json.loads(message.content[0].text) == {"zeta": "text", "alpha": 7, "middle": True}


@pytest.mark.parametrize(
    "model, counted_by",
    [
        ("anthropic/claude-fake", "provider"),
        ("openai-fake/gpt-fake", "estimated"),
        ("vertex/claude-vertex", "provider"),
    ],
)
def test_anthropic_count_tokens(claude, model, counted_by):
    raw = claude.messages.with_raw_response.count_tokens(
        model=model,
        system="be brief",
        messages=[{"role": "user", "content": "how many tokens is this?"}],
        tools=WEATHER_ANTHROPIC,
    )
    assert raw.headers["x-dgidgi-token-count"] == counted_by
    assert raw.parse().input_tokens > 0


def test_anthropic_models_list_pages(claude):
    ids = [model.id for model in claude.models.list(limit=2)]
    assert "claude-fake" in ids and "gpt-fake" in ids
    assert len(ids) == len(set(ids)) > 2
    assert claude.models.retrieve("claude-fake").type == "model"


# --- Embeddings -------------------------------------------------------------------------

EMBEDDING_MODELS = [
    "openai-fake/text-embed-fake",
    "gemini/gemini-embed-fake",
    "cohere/embed-fake",
    "azure/azure-embed",
    "azure-dated/azure-embed",
]


def fake_vector(text, dimensions):
    """What the fakes answer for a text (tests/common/fake_providers.rs `fake_vector`)."""
    return [(len(text) + i) * 0.25 for i in range(dimensions)]


@pytest.mark.parametrize("model", EMBEDDING_MODELS)
@pytest.mark.parametrize("encoding", ["float", "base64", None])
def test_openai_embeddings(gpt, model, encoding):
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    extra = {} if encoding is None else {"encoding_format": encoding}
    result = gpt.embeddings.create(model=model, input=["alpha beta", "gamma"], dimensions=3, **extra)
    if encoding == "base64":
        import base64
        import struct

        packed = base64.b64decode(result.data[1].embedding)
        vector = list(struct.unpack("<3f", packed))
    else:
        vector = result.data[1].embedding
    assert vector == fake_vector("gamma", 3)
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage.prompt_tokens > 0
