"""Real-client compatibility tests for POST /v1/responses (OpenAI Responses API).

Clients are used unchanged: the `openai` Python SDK, the OpenAI Agents SDK
(`openai-agents`) and pydantic-ai's `OpenAIResponsesModel`.

Environment:
  DGIDGI_BASE_URL  gateway root without path, e.g. http://127.0.0.1:1234
  DGIDGI_KEY       API key the gateway accepts

Expected upstream behaviour (the fake providers behind the gateway):
  * plain text input            -> "echo: <last user text>"
  * function tools, no results  -> two function calls of the first tool,
                                   {"city":"Paris"} and {"city":"Berlin"}
  * function_call_output given  -> text starting with "echo:"
"""
import json
import os

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")  # never export traces to api.openai.com

import pytest
from openai import AsyncOpenAI, OpenAI

BASE_URL = os.environ.get("DGIDGI_BASE_URL", "http://127.0.0.1:8080").rstrip("/")
API_KEY = os.environ.get("DGIDGI_KEY", "test-key")
V1 = BASE_URL + "/v1"

MODELS = ["openai-resp/gpt-fake", "anthropic/claude-fake"]

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def sync_client():
    return OpenAI(base_url=V1, api_key=API_KEY, max_retries=0, timeout=60)


def async_client():
    return AsyncOpenAI(base_url=V1, api_key=API_KEY, max_retries=0, timeout=60)


def function_calls(output):
    return [item for item in output if item.type == "function_call"]


def assert_paris_berlin(calls):
    assert [c.name for c in calls] == ["get_weather", "get_weather"], calls
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Berlin"}], calls
    call_ids = [c.call_id for c in calls]
    assert all(call_ids) and len(set(call_ids)) == 2, call_ids


# ---------------------------------------------------------------- openai SDK


@pytest.mark.parametrize("model", MODELS)
def test_create_plain(model):
    resp = sync_client().responses.create(model=model, input="hello responses")
    assert resp.object == "response"
    assert resp.id
    assert resp.status == "completed"
    assert resp.output_text == "echo: hello responses"
    assert [item.type for item in resp.output] == ["message"]
    assert resp.output[0].role == "assistant"
    assert resp.usage is not None
    assert resp.usage.input_tokens > 0
    assert resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens


@pytest.mark.parametrize("model", MODELS)
def test_create_message_items_input(model):
    # The item shape the Agents SDK / AI SDK / pydantic-ai send: role messages with input_text parts.
    resp = sync_client().responses.create(
        model=model,
        input=[
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello parts"}]},
        ],
    )
    assert resp.output_text == "echo: hello parts"


@pytest.mark.parametrize("model", MODELS)
def test_create_stream(model):
    stream = sync_client().responses.create(model=model, input="stream please", stream=True)
    events = list(stream)
    types = [e.type for e in events]
    assert types[0] == "response.created", types
    assert types[-1] == "response.completed", types
    seq = [e.sequence_number for e in events]
    assert seq == sorted(seq) and len(set(seq)) == len(seq), seq
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: stream please"
    done = [e.text for e in events if e.type == "response.output_text.done"]
    assert done == ["echo: stream please"], types
    final = events[-1].response
    assert final.status == "completed"
    assert final.usage is not None
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert final.output_text == "echo: stream please"


@pytest.mark.parametrize("model", MODELS)
def test_stream_helper(model):
    # client.responses.stream() runs the SDK's event state machine (needs output_item.added,
    # content_part.added before deltas, output_item.done, response.completed).
    with sync_client().responses.stream(model=model, input="helper please") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: helper please"
    assert final.output_text == "echo: helper please"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_instructions_and_max_output_tokens(model):
    resp = sync_client().responses.create(
        model=model,
        instructions="You are a terse assistant.",
        max_output_tokens=64,
        input="hello with instructions",
    )
    assert resp.status == "completed"
    assert resp.output_text == "echo: hello with instructions"


@pytest.mark.parametrize("model", MODELS)
def test_function_tool_roundtrip(model):
    client = sync_client()
    user = {"role": "user", "content": "What is the weather in Paris and Berlin?"}
    first = client.responses.create(model=model, input=[user], tools=[WEATHER_TOOL])
    calls = function_calls(first.output)
    assert_paris_berlin(calls)
    for c in calls:
        assert c.id  # fc_... item id
    # Stateless continuation: replay the previous output items, then the tool outputs.
    replay = [item.model_dump(exclude_none=True) for item in first.output]
    outputs = [
        {"type": "function_call_output", "call_id": c.call_id, "output": "sunny in " + json.loads(c.arguments)["city"]}
        for c in calls
    ]
    second = client.responses.create(model=model, input=[user, *replay, *outputs], tools=[WEATHER_TOOL])
    assert second.status == "completed"
    assert function_calls(second.output) == []
    assert second.output_text.startswith("echo:"), second.output_text


@pytest.mark.parametrize("model", MODELS)
def test_function_tool_stream(model):
    client = sync_client()
    user = {"role": "user", "content": "What is the weather in Paris and Berlin?"}
    events = list(client.responses.create(model=model, input=[user], tools=[WEATHER_TOOL], stream=True))
    types = [e.type for e in events]
    assert types[-1] == "response.completed", types
    done_items = [e.item for e in events if e.type == "response.output_item.done"]
    calls = function_calls(done_items)
    assert_paris_berlin(calls)
    # argument deltas add up to the final arguments of each call
    for c in calls:
        deltas = "".join(
            e.delta for e in events if e.type == "response.function_call_arguments.delta" and e.item_id == c.id
        )
        assert deltas == c.arguments
    assert_paris_berlin(function_calls(events[-1].response.output))
    outputs = [
        {"type": "function_call_output", "call_id": c.call_id, "output": "sunny in " + json.loads(c.arguments)["city"]}
        for c in calls
    ]
    replay = [c.model_dump(exclude_none=True) for c in calls]
    events = list(
        client.responses.create(model=model, input=[user, *replay, *outputs], tools=[WEATHER_TOOL], stream=True)
    )
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("echo:"), text
    assert events[-1].type == "response.completed"


# ---------------------------------------------------------------- OpenAI Agents SDK


def _agents_weather_tool(agents, seen):
    """The weather tool as an Agents SDK function tool, recording the cities it was asked for."""

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        seen.append(city)
        return "sunny in " + city

    return get_weather


def _agents_setup():
    import agents

    agents.set_tracing_disabled(True)
    return agents


@pytest.mark.asyncio
@pytest.mark.parametrize("model", MODELS)
async def test_agents_sdk_function_tool(model):
    agents = _agents_setup()
    seen = []
    get_weather = _agents_weather_tool(agents, seen)

    agent = agents.Agent(
        name="weather",
        instructions="Answer weather questions with the get_weather tool.",
        tools=[get_weather],
        model=agents.OpenAIResponsesModel(model=model, openai_client=async_client()),
    )
    result = await agents.Runner.run(agent, "What is the weather in Paris and Berlin?")
    assert sorted(seen) == ["Berlin", "Paris"]
    assert isinstance(result.final_output, str)
    assert result.final_output.startswith("echo:"), result.final_output


@pytest.mark.asyncio
@pytest.mark.parametrize("model", MODELS)
async def test_agents_sdk_default_agent(model):
    # The default setup: the gateway as the default OpenAI client, the model by name. A name with
    # a prefix other than openai/ reaches the gateway whole once the provider map says so.
    agents = _agents_setup()
    from agents.models.multi_provider import MultiProvider

    agents.set_default_openai_client(async_client(), use_for_tracing=False)
    seen = []
    get_weather = _agents_weather_tool(agents, seen)

    agent = agents.Agent(name="weather", tools=[get_weather], model=model)
    run_config = agents.RunConfig(model_provider=MultiProvider(unknown_prefix_mode="model_id"))
    result = await agents.Runner.run(agent, "What is the weather in Paris and Berlin?", run_config=run_config)
    assert sorted(seen) == ["Berlin", "Paris"]
    assert result.final_output.startswith("echo:"), result.final_output


@pytest.mark.asyncio
@pytest.mark.parametrize("model", MODELS)
async def test_agents_sdk_streamed(model):
    agents = _agents_setup()
    seen = []
    get_weather = _agents_weather_tool(agents, seen)

    agent = agents.Agent(
        name="weather",
        instructions="Answer weather questions with the get_weather tool.",
        tools=[get_weather],
        model=agents.OpenAIResponsesModel(model=model, openai_client=async_client()),
    )
    result = agents.Runner.run_streamed(agent, "What is the weather in Paris and Berlin?")
    async for _ in result.stream_events():
        pass
    assert sorted(seen) == ["Berlin", "Paris"]
    assert result.final_output.startswith("echo:"), result.final_output


# ---------------------------------------------------------------- pydantic-ai


def _pydantic_model(model):
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIResponsesModel(model, provider=OpenAIProvider(base_url=V1, api_key=API_KEY))


@pytest.mark.asyncio
@pytest.mark.parametrize("model", MODELS)
async def test_pydantic_ai_plain(model):
    from pydantic_ai import Agent

    agent = Agent(_pydantic_model(model))
    result = await agent.run("hello pydantic")
    assert result.output == "echo: hello pydantic"
    usage = result.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0


@pytest.mark.asyncio
@pytest.mark.parametrize("model", MODELS)
async def test_pydantic_ai_tool(model):
    from pydantic_ai import Agent

    seen = []
    agent = Agent(_pydantic_model(model), instructions="Answer weather questions with the get_weather tool.")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        seen.append(city)
        return "sunny in " + city

    result = await agent.run("What is the weather in Paris and Berlin?")
    assert sorted(seen) == ["Berlin", "Paris"]
    assert result.output.startswith("echo:"), result.output


@pytest.mark.asyncio
@pytest.mark.parametrize("model", MODELS)
async def test_pydantic_ai_stream(model):
    from pydantic_ai import Agent

    agent = Agent(_pydantic_model(model))
    async with agent.run_stream("hello pydantic stream") as result:
        chunks = [c async for c in result.stream_text(delta=True)]
    assert "".join(chunks) == "echo: hello pydantic stream"
