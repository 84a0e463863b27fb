"""LangChain's chat models, unchanged, against dgidgi in front of local fakes: `ChatOpenAI` and
`ChatAnthropic` chat and structured output (`with_structured_output`, each with its default
method: json_schema through the OpenAI SDK's strict parse for ChatOpenAI, a forced tool for
ChatAnthropic), each to an upstream of its own format (passed through) and of the other
(translated).

Run by tests/sdk_clients.rs with DGIDGI_BASE_URL and DGIDGI_KEY.
"""

import os

import pydantic
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_openai import ChatOpenAI

BASE_URL = os.environ["DGIDGI_BASE_URL"]
KEY = os.environ["DGIDGI_KEY"]

# Each client in front of its own format and the other.
TARGETS = ["openai-fake/gpt-fake", "anthropic/claude-fake"]


class Answer(pydantic.BaseModel):
    """A form to fill (fields out of alphabetical order, as a model must write them)."""

    zeta: str
    alpha: int
    middle: bool


def chat_openai(model):
    return ChatOpenAI(model=model, base_url=BASE_URL + "/v1", api_key=KEY, max_retries=0)


def chat_anthropic(model):
    return ChatAnthropic(
        model=model, base_url=BASE_URL, api_key=KEY, max_retries=0, max_tokens=200
    )


@pytest.mark.parametrize("model", TARGETS)
def test_chat_openai_invoke_and_structured_output(model):
    llm = chat_openai(model)
    assert llm.invoke("hello langchain").content == "echo: hello langchain"
    answer = llm.with_structured_output(Answer).invoke("fill the form")
    assert answer == Answer(zeta="text", alpha=7, middle=True)


@pytest.mark.parametrize("model", TARGETS)
def test_chat_anthropic_invoke_and_structured_output(model):
    llm = chat_anthropic(model)
    assert llm.invoke("hello langchain").content == "echo: hello langchain"
    answer = llm.with_structured_output(Answer).invoke("fill the form")
    assert answer == Answer(zeta="text", alpha=7, middle=True)


@pytest.mark.parametrize("model", TARGETS)
def test_chat_anthropic_json_schema_method(model):
    llm = chat_anthropic(model).with_structured_output(Answer, method="json_schema")
    assert llm.invoke("fill the form") == Answer(zeta="text", alpha=7, middle=True)


@pytest.mark.parametrize("model", TARGETS)
def test_chat_openai_streams(model):
    text = "".join(chunk.content for chunk in chat_openai(model).stream("stream please"))
    assert text == "echo: stream please"


@pytest.mark.parametrize(
    "model", ["openai-fake/text-embed-fake", "gemini/gemini-embed-fake", "cohere/embed-fake"]
)
def test_openai_embeddings(model):
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: LangChain would otherwise tokenize with tiktoken, which
    # downloads its encodings (and the gateway routes by name, not by OpenAI's tokenizer).
    embeddings = OpenAIEmbeddings(
        model=model, base_url=BASE_URL + "/v1", api_key=KEY, dimensions=3,
        check_embedding_ctx_length=False, max_retries=0,
    )
    vectors = embeddings.embed_documents(["alpha", "beta gamma"])
    assert vectors[1] == [(10 + i) * 0.25 for i in range(3)]
    assert embeddings.embed_query("alpha") == [(5 + i) * 0.25 for i in range(3)]
