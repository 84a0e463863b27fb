"""Google's official `google-genai` Python SDK (3.3.0), unchanged, against dgidgi's Gemini front
door (`/v1beta/models/{model}:generateContent` and friends, also under `/v1/`), in front of a
Gemini upstream (passed through) and an OpenAI-format one (translated).

Run by tests/sdk_clients.rs with DGIDGI_BASE_URL (no path) and DGIDGI_KEY.

What the SDK does on the wire (observed with 3.3.0):
  * the key always goes in an `x-goog-api-key` header (the SDK refuses to start without one);
  * the model name is put after `models/` as is: `gemini/gemini-fake` becomes
    `/v1beta/models/gemini/gemini-fake:generateContent`, with the slash left raw (no %2F);
  * streams are `POST ...:streamGenerateContent?alt=sse`; the SDK reads only lines that start
    with `data: ` (space included) and breaks on any other line (`event:`, `id:`, `:` comments);
  * the default api_version is `v1`, not `v1beta`;
  * there are no retries unless HttpOptions.retry_options is set.
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest
from google import genai
from google.genai import errors, types

BASE_URL = os.environ["DGIDGI_BASE_URL"]
KEY = os.environ["DGIDGI_KEY"]

# The Gemini front door in front of a Gemini upstream and an OpenAI-format one.
NATIVE = ["gemini/gemini-fake", "openai-fake/gpt-fake"]
BARE = [model.split("/")[1] for model in NATIVE]
# And in front of the clouds (tests/common/fake_clouds.rs): Gemini on Vertex AI (as sent, with
# the service account's token), Claude on Vertex AI, Azure OpenAI.
MODELS = NATIVE + ["vertex/gemini-vertex", "vertex/claude-vertex", "azure/azure-gpt"]

NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
QUESTION = "weather in Paris and Berlin?"


def make_client(api_version="v1beta"):
    """A client with our key and no retries; api_version=None keeps the SDK's default (v1)."""
    options = dict(base_url=BASE_URL, retry_options=types.HttpRetryOptions(attempts=1))
    if api_version is not None:
        options["api_version"] = api_version
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(**options))


@pytest.fixture()
def client():
    # Keep the client referenced for the whole test: a Client dropped mid-expression closes its
    # HTTP client ("Cannot send a request, as the client has been closed").
    with make_client() as c:
        yield c


def get_weather(city: str) -> str:
    """Weather of a city.

    Args:
      city: the city's name
    """
    return f"sunny in {city}"


# The SDK sends a Python function as `parameters_json_schema` (snake_case, JSON Schema) and a
# typed declaration as `parameters` (OpenAPI subset, upper-case types): a gateway sees both.
WEATHER_SCHEMA = types.FunctionDeclaration(
    name="get_weather",
    description="Weather of a city",
    parameters=types.Schema(
        type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]
    ),
)
TOOLS = {
    "python_function": [get_weather],
    "schema": [types.Tool(function_declarations=[WEATHER_SCHEMA])],
}


def raw_post(path, body, query=None, headers=None):
    """POST with urllib, no SDK: returns (status, content type, body bytes)."""
    url = BASE_URL + path + ("?" + urllib.parse.urlencode(query) if query else "")
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


# --- generateContent, streamGenerateContent ------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_generate_content(client, model):
    response = client.models.generate_content(model=model, contents="hello genai")
    assert response.text == "echo: hello genai"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count > 0
    assert response.usage_metadata.candidates_token_count > 0


@pytest.mark.parametrize("model", MODELS)
def test_generate_content_with_config(client, model):
    config = types.GenerateContentConfig(
        system_instruction="be brief",
        temperature=0.2,
        max_output_tokens=50,
        stop_sequences=["STOP!"],
    )
    response = client.models.generate_content(model=model, contents="hello genai", config=config)
    assert response.text == "echo: hello genai"


@pytest.mark.parametrize("model", MODELS)
def test_generate_content_stream(client, model):
    chunks = list(client.models.generate_content_stream(model=model, contents="stream please"))
    assert "".join(chunk.text or "" for chunk in chunks) == "echo: stream please"
    finishes = [c.candidates[0].finish_reason for c in chunks if c.candidates]
    assert types.FinishReason.STOP in finishes


@pytest.mark.parametrize("model", MODELS)
def test_chat_keeps_history(client, model):
    chat = client.chats.create(model=model)
    assert chat.send_message("one").text == "echo: one"
    assert chat.send_message("two").text == "echo: two"


# --- Function calling -------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("declared", sorted(TOOLS))
@pytest.mark.parametrize("streamed", [False, True])
def test_function_calling_round_trip(client, model, declared, streamed):
    config = types.GenerateContentConfig(tools=TOOLS[declared], automatic_function_calling=NO_AFC)
    question = types.Content(role="user", parts=[types.Part(text=QUESTION)])
    if streamed:
        chunks = list(
            client.models.generate_content_stream(model=model, contents=[question], config=config)
        )
        calls = [call for chunk in chunks for call in (chunk.function_calls or [])]
    else:
        response = client.models.generate_content(model=model, contents=[question], config=config)
        calls = response.function_calls or []
    assert [call.name for call in calls] == ["get_weather", "get_weather"]
    assert [call.args["city"] for call in calls] == ["Paris", "Berlin"]

    # The model's turn as the SDK rebuilds it, then one functionResponse per call (echoing the
    # call's id when the gateway gave one, as careful clients do).
    model_turn = types.Content(
        role="model",
        parts=[types.Part(function_call=call) for call in calls],
    )
    answers = types.Content(
        role="user",
        parts=[
            types.Part(
                function_response=types.FunctionResponse(
                    id=call.id, name=call.name, response={"result": get_weather(call.args["city"])}
                )
            )
            for call in calls
        ],
    )
    answer = client.models.generate_content(
        model=model, contents=[question, model_turn, answers], config=config
    )
    assert not answer.function_calls
    assert answer.text.startswith("echo:")


@pytest.mark.parametrize("model", MODELS)
def test_automatic_function_calling(client, model):
    """AFC: the SDK calls get_weather itself and sends functionResponse parts back by name only
    (never with an id, even when the functionCall had one)."""
    seen = []

    def get_weather(city: str) -> str:
        """Weather of a city.

        Args:
          city: the city's name
        """
        seen.append(city)
        return f"sunny in {city}"

    config = types.GenerateContentConfig(
        tools=[get_weather],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(maximum_remote_calls=3),
    )
    response = client.models.generate_content(model=model, contents=QUESTION, config=config)
    assert seen == ["Paris", "Berlin"]
    assert response.text.startswith("echo:")


# --- countTokens, the model list --------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens(client, model):
    counted = client.models.count_tokens(model=model, contents="count these tokens")
    assert counted.total_tokens > 0


@pytest.mark.parametrize("page_size", [None, 1])
def test_models_list_and_get(client, page_size):
    config = {"page_size": page_size} if page_size else None
    # The list names each model the tenant may reach once, without its provider (as /v1/models).
    names = [m.name for m in client.models.list(config=config)]
    for model in BARE:
        assert f"models/{model}" in names
    for model in BARE:
        got = client.models.get(model=model)
        assert got.name == f"models/{model}"


def test_default_api_version_is_v1():
    """Without api_version the SDK (3.3.0) calls /v1/models/...: the same paths as OpenAI's
    /v1/models, told apart by the x-goog-api-key header."""
    with make_client(api_version=None) as c:
        assert c.models.generate_content(model=MODELS[0], contents="hello genai").text == (
            "echo: hello genai"
        )
        names = [m.name for m in c.models.list()]
        assert all(f"models/{model}" in names for model in BARE)


def test_model_name_given_with_models_prefix(client):
    response = client.models.generate_content(model=f"models/{MODELS[0]}", contents="hello genai")
    assert response.text == "echo: hello genai"


# --- Errors, the key in the query -------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
def test_unknown_model_is_a_client_error(client, streamed):
    with pytest.raises(errors.ClientError) as error:
        if streamed:
            list(client.models.generate_content_stream(model="nope/none", contents="x"))
        else:
            client.models.generate_content(model="nope/none", contents="x")
    assert error.value.code in (400, 404)
    assert error.value.message
    assert error.value.status


def test_bad_key_is_refused():
    bad = genai.Client(
        api_key="not-our-key",
        http_options=types.HttpOptions(
            base_url=BASE_URL, api_version="v1beta", retry_options=types.HttpRetryOptions(attempts=1)
        ),
    )
    with pytest.raises(errors.ClientError) as error:
        bad.models.generate_content(model=MODELS[0], contents="x")
    assert error.value.code in (401, 403)
    bad.close()


@pytest.mark.parametrize("model_in_path", ["gemini%2Fgemini-fake", "gemini/gemini-fake"])
def test_key_in_query(model_in_path):
    """The SDK always sends the header, so `?key=` (curl, REST samples) is checked without it."""
    body = {"contents": [{"role": "user", "parts": [{"text": "hello genai"}]}]}
    path = f"/v1beta/models/{model_in_path}:generateContent"
    status, _, data = raw_post(path, body, query={"key": KEY})
    assert status == 200, data
    reply = json.loads(data)
    assert reply["candidates"][0]["content"]["parts"][0]["text"] == "echo: hello genai"
    status, _, _ = raw_post(path, body, query={"key": "not-our-key"})
    assert status in (401, 403)
    status, _, _ = raw_post(path, body)
    assert status in (401, 403)


def test_stream_framing_is_what_the_sdk_parses():
    """The SDK reads only `data: ` lines: no `event:`/`id:` fields, no `:` keep-alive comments."""
    body = {"contents": [{"role": "user", "parts": [{"text": "stream please"}]}]}
    status, content_type, data = raw_post(
        f"/v1beta/models/{MODELS[0]}:streamGenerateContent",
        body,
        query={"alt": "sse", "key": KEY},
    )
    assert status == 200, data
    assert content_type.startswith("text/event-stream")
    lines = [line for line in data.decode().splitlines() if line]
    assert lines and all(line.startswith("data: ") for line in lines), lines
    text = ""
    for line in lines:
        event = json.loads(line[len("data: "):])
        for part in event["candidates"][0]["content"].get("parts", []):
            text += part.get("text", "")
    assert text == "echo: stream please"
