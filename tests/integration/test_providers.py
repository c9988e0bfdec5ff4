"""Model providers through their real client libraries (boto3 via langchain-aws, the openai SDK via
langchain-openai) against loopback emulators speaking Bedrock Runtime's and OpenAI's wire
protocols: SigV4-signed rest-json and AWS event streams, bearer-authenticated JSON and SSE."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from copilot.adapters.providers.factory import (
    OPENAI_EMBED_BATCH,
    build_chat_model,
    build_embeddings,
    call_with_provider_errors,
)
from copilot.config import ProviderSettings, embedding_model_id
from copilot.errors import BadRequestError, UnavailableError
from copilot.knowledge.vectors import cosine
from copilot_dev.emulators.bedrock import BedrockEmulator
from copilot_dev.emulators.openai_api import OpenAiEmulator, hashed_embedding
from copilot_dev.localstack import free_port

pytestmark = pytest.mark.integration

DOCS = [
    "To reset your password, open Settings, choose Security and click Reset password.",
    "Invoices are emailed monthly; download past invoices from the Billing page.",
    "Our support team answers Monday to Friday, 9am to 5pm.",
    "Shipping to Europe takes three to five business days.",
]
SYSTEM = (
    "You are the support copilot. Answer only from the numbered sources and cite them.\n"
    "Sources:\n[1] Reset password: open Settings > Security > Reset password.\n"
    "[2] Passwords expire every 90 days."
)
QUESTION = "How do I reset my password?"
CONVERSATION = [
    SystemMessage(SYSTEM),
    HumanMessage("Hi, I cannot log in."),
    AIMessage("Sorry to hear that. What happens when you try?"),
    HumanMessage(QUESTION),
]
EXPECTED = f"Answer from [1] [2] to: {QUESTION}"


@pytest.fixture(scope="module")
def bedrock() -> Iterator[BedrockEmulator]:
    with BedrockEmulator(region="us-east-1") as emulator:
        yield emulator


@pytest.fixture(scope="module")
def openai_api() -> Iterator[OpenAiEmulator]:
    with OpenAiEmulator() as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _fresh_emulators(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("bedrock", "openai_api"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


@pytest.fixture(autouse=True)
def _no_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken downloads its encodings on first use; nothing here may need them."""
    import tiktoken

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tiktoken was asked for an encoding (a run-time download)")

    monkeypatch.setattr(tiktoken, "get_encoding", refuse)
    monkeypatch.setattr(tiktoken, "encoding_for_model", refuse)


def bedrock_settings(emulator: BedrockEmulator, **values: Any) -> ProviderSettings:
    base: dict[str, Any] = {
        "embedder": "bedrock",
        "llm": "bedrock",
        "region": emulator.region,
        "bedrock_endpoint_url": emulator.url,
    }
    return ProviderSettings(**(base | values))


def openai_settings(emulator: OpenAiEmulator, **values: Any) -> ProviderSettings:
    base: dict[str, Any] = {
        "embedder": "openai",
        "llm": "openai",
        "openai_base_url": emulator.base_url,
        "openai_api_key": emulator.api_key,
    }
    return ProviderSettings(**(base | values))


def ranking(vectors: list[list[float]], query: list[float]) -> list[int]:
    return sorted(range(len(vectors)), key=lambda i: -cosine(vectors[i], query))


# --- identities --------------------------------------------------------------------------------


def test_embedding_model_id_names_provider_model_and_dimensions() -> None:
    assert ProviderSettings().embedder == "minilm"  # the offline default
    ids = {
        embedding_model_id(ProviderSettings(embedder="minilm")),
        embedding_model_id(ProviderSettings(embedder="wordllama")),
        embedding_model_id(ProviderSettings(embedder="bedrock")),
        embedding_model_id(ProviderSettings(embedder="bedrock", embed_dimensions=256)),
        embedding_model_id(
            ProviderSettings(embedder="bedrock", bedrock_embed_model="amazon.titan-embed-text-v1")
        ),
        embedding_model_id(ProviderSettings(embedder="openai")),
        embedding_model_id(
            ProviderSettings(embedder="openai", openai_embed_model="text-embedding-3-large")
        ),
    }
    assert ids == {
        "all-minilm-l6-v2-int8",
        "wordllama-l2-supercat-256",
        "bedrock:amazon.titan-embed-text-v2:0",
        "bedrock:amazon.titan-embed-text-v2:0@256",
        "bedrock:amazon.titan-embed-text-v1",
        "openai:text-embedding-3-small",
        "openai:text-embedding-3-large",
    }


def test_no_llm_means_no_chat_model() -> None:
    assert build_chat_model(ProviderSettings(llm="none")) is None


def test_importing_providers_loads_no_provider_library() -> None:
    probe = (
        "import sys, copilot.adapters.providers.factory; "
        "print([m for m in ('boto3', 'botocore', 'langchain_aws', 'langchain_openai', 'openai', "
        "'langchain_core', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# --- Bedrock -------------------------------------------------------------------------------------


def test_bedrock_embeddings_rank_the_relevant_document_first(bedrock: BedrockEmulator) -> None:
    settings = bedrock_settings(bedrock)
    embeddings = build_embeddings(settings)
    assert getattr(embeddings, "model_id", None) == embedding_model_id(settings)

    vectors = embeddings.embed_documents(DOCS)
    query = embeddings.embed_query(QUESTION)

    assert [len(v) for v in vectors] == [1024] * len(DOCS)  # Titan v2's default
    assert len(query) == 1024
    assert ranking(vectors, query)[0] == 0
    assert ranking(vectors, embeddings.embed_query("download my invoices"))[0] == 1
    # One signed InvokeModel per text: Titan has no batch API.
    texts = [r["inputText"] for r in bedrock.embedding_requests[: len(DOCS)]]
    assert sorted(texts) == sorted(DOCS)
    assert {r.auth for r in bedrock.requests} == {"AWS4-HMAC-SHA256"}
    assert {r.path for r in bedrock.requests} == {"/model/amazon.titan-embed-text-v2:0/invoke"}


def test_bedrock_embeddings_keep_order_across_parallel_requests(bedrock: BedrockEmulator) -> None:
    embeddings = build_embeddings(bedrock_settings(bedrock, embed_dimensions=256))
    texts = [f"article {i} about topic {i * 7}" for i in range(11)]

    vectors = embeddings.embed_documents(texts)

    for text, vector in zip(texts, vectors, strict=True):
        assert vector == pytest.approx(hashed_embedding(text, 256))
    assert {r["dimensions"] for r in bedrock.embedding_requests} == {256}


def test_bedrock_chat_sends_system_sources_and_history(bedrock: BedrockEmulator) -> None:
    chat = build_chat_model(bedrock_settings(bedrock))
    assert chat is not None

    reply = chat.invoke(CONVERSATION)

    assert reply.text == EXPECTED
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0
    sent = bedrock.last_chat
    assert sent.model == "anthropic.claude-3-haiku-20240307-v1:0"
    assert sent.system == SYSTEM
    assert [m["role"] for m in sent.messages] == ["user", "assistant", "user"]
    assert sent.messages[-1]["content"] == QUESTION
    assert (sent.temperature, sent.max_tokens, sent.stream) == (0.0, 512, False)
    assert bedrock.requests[-1].path.endswith("/converse")


def test_bedrock_chat_answers_what_the_test_scripts(bedrock: BedrockEmulator) -> None:
    seen: list[tuple[str, int]] = []

    def responder(system: str, messages: list[dict[str, str]]) -> str:
        seen.append((system, len(messages)))
        return "Open Settings > Security > Reset password [1]."

    bedrock.responder = responder
    chat = build_chat_model(bedrock_settings(bedrock))
    assert chat is not None

    assert chat.invoke(CONVERSATION).text == "Open Settings > Security > Reset password [1]."
    assert seen == [(SYSTEM, 3)]


def test_bedrock_chat_streams_over_the_event_stream(bedrock: BedrockEmulator) -> None:
    chat = build_chat_model(bedrock_settings(bedrock))
    assert chat is not None

    chunks = [chunk.text for chunk in chat.stream(CONVERSATION)]

    assert "".join(chunks) == EXPECTED
    assert len([c for c in chunks if c]) == len(EXPECTED.split())  # token by token
    assert bedrock.last_chat.stream
    assert bedrock.requests[-1].path.endswith("/converse-stream")


def test_bedrock_max_tokens_cuts_the_answer(bedrock: BedrockEmulator) -> None:
    chat = build_chat_model(bedrock_settings(bedrock, llm_max_tokens=3))
    assert chat is not None

    reply = chat.invoke(CONVERSATION)

    assert reply.text == "Answer from [1] "
    assert reply.response_metadata["stopReason"] == "max_tokens"


@pytest.mark.parametrize(("status", "code"), [(503, "Unavailable"), (429, "Throttling")])
def test_bedrock_outage_is_unavailable(bedrock: BedrockEmulator, status: int, code: str) -> None:
    bedrock.fail_with = status
    settings = bedrock_settings(bedrock, provider_max_retries=0)
    embeddings, chat = build_embeddings(settings), build_chat_model(settings)
    assert chat is not None

    with pytest.raises(UnavailableError, match=code):
        embeddings.embed_documents(DOCS[:2])
    with pytest.raises(UnavailableError, match=code):
        embeddings.embed_query(QUESTION)
    with pytest.raises(UnavailableError, match=code):
        chat.invoke(CONVERSATION)
    with pytest.raises(UnavailableError, match=code):
        list(chat.stream(CONVERSATION))


def test_bedrock_retries_a_throttled_request(bedrock: BedrockEmulator) -> None:
    bedrock.fail_with = 429
    chat = build_chat_model(bedrock_settings(bedrock, provider_max_retries=1))
    assert chat is not None

    with pytest.raises(UnavailableError):
        chat.invoke(CONVERSATION)

    assert [r.status for r in bedrock.requests] == [429, 429]


def test_bedrock_stream_broken_midway_is_unavailable(bedrock: BedrockEmulator) -> None:
    bedrock.stream_error = "throttlingException"
    chat = build_chat_model(bedrock_settings(bedrock))
    assert chat is not None
    received: list[str] = []

    with pytest.raises(UnavailableError, match="throttlingException"):
        for chunk in chat.stream(CONVERSATION):
            received.append(chunk.text)

    assert "".join(received) == "Answer "  # what came before the exception event


def test_bedrock_timeout_and_unreachable_are_unavailable(bedrock: BedrockEmulator) -> None:
    bedrock.delay = 3
    slow = build_chat_model(
        bedrock_settings(bedrock, llm_timeout_seconds=0.3, provider_max_retries=0)
    )
    assert slow is not None
    started = time.monotonic()
    with pytest.raises(UnavailableError):
        slow.invoke(CONVERSATION)
    assert time.monotonic() - started < 2

    closed = f"http://127.0.0.1:{free_port()}"
    settings = bedrock_settings(bedrock, bedrock_endpoint_url=closed, provider_max_retries=0)
    with pytest.raises(UnavailableError):
        build_embeddings(settings).embed_query(QUESTION)


def test_bedrock_unknown_model_is_a_configuration_error(bedrock: BedrockEmulator) -> None:
    settings = bedrock_settings(
        bedrock, bedrock_chat_model="anthropic.claude-9", bedrock_embed_model="amazon.titan-9"
    )
    chat = build_chat_model(settings)
    assert chat is not None

    with pytest.raises(BadRequestError, match="ResourceNotFoundException") as chat_error:
        chat.invoke(CONVERSATION)
    with pytest.raises(BadRequestError, match="ResourceNotFoundException") as embed_error:
        build_embeddings(settings).embed_query(QUESTION)

    assert chat_error.value.field == "bedrock_chat_model"
    assert embed_error.value.field == "bedrock_embed_model"
    assert [r.status for r in bedrock.requests] == [404, 404]  # not retried


def test_bedrock_credentials_for_another_region_are_a_configuration_error(
    bedrock: BedrockEmulator,
) -> None:
    embeddings = build_embeddings(bedrock_settings(bedrock, region="eu-west-1"))

    with pytest.raises(BadRequestError, match="InvalidSignatureException"):
        embeddings.embed_query(QUESTION)


def test_bedrock_rejects_unsigned_requests(bedrock: BedrockEmulator) -> None:
    response = requests.post(
        f"{bedrock.url}/model/amazon.titan-embed-text-v2:0/invoke",
        json={"inputText": QUESTION},
        timeout=5,
    )

    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}
    assert response.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException")
    assert bedrock.embedding_requests == []


def test_bedrock_validates_requests_like_aws(bedrock: BedrockEmulator) -> None:
    client = boto3.client("bedrock-runtime", endpoint_url=bedrock.url, region_name="us-east-1")
    titan = "amazon.titan-embed-text-v2:0"

    with pytest.raises(client.exceptions.ValidationException, match="minLength"):
        client.invoke_model(modelId=titan, body=json.dumps({"inputText": ""}))
    with pytest.raises(client.exceptions.ValidationException, match="not a valid enum"):
        client.invoke_model(modelId=titan, body=json.dumps({"inputText": "x", "dimensions": 300}))
    with pytest.raises(client.exceptions.ValidationException, match="must alternate"):
        client.converse(
            modelId="anthropic.claude-3-haiku-20240307-v1:0",
            messages=[
                {"role": "user", "content": [{"text": "one"}]},
                {"role": "user", "content": [{"text": "two"}]},
            ],
        )


def test_call_with_provider_errors_maps_a_raw_client_call(bedrock: BedrockEmulator) -> None:
    client = boto3.client("bedrock-runtime", endpoint_url=bedrock.url, region_name="us-east-1")
    bedrock.fail_with = 503

    with pytest.raises(UnavailableError):
        call_with_provider_errors(
            lambda: client.invoke_model(
                modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "x"})
            ),
            "bedrock",
        )


# --- OpenAI-compatible ---------------------------------------------------------------------------


def test_openai_embeddings_rank_the_relevant_document_first(openai_api: OpenAiEmulator) -> None:
    settings = openai_settings(openai_api)
    embeddings = build_embeddings(settings)
    assert getattr(embeddings, "model_id", None) == "openai:text-embedding-3-small"

    vectors = embeddings.embed_documents(DOCS)
    query = embeddings.embed_query(QUESTION)

    assert [len(v) for v in vectors] == [1536] * len(DOCS)
    assert ranking(vectors, query)[0] == 0
    assert ranking(vectors, embeddings.embed_query("download my invoices"))[0] == 1
    # The documents went as text in one request (no tiktoken token ids).
    assert openai_api.embedding_requests[0]["input"] == DOCS
    assert openai_api.embedding_requests[0]["model"] == "text-embedding-3-small"


def test_openai_embeddings_batch_in_order_with_dimensions(openai_api: OpenAiEmulator) -> None:
    embeddings = build_embeddings(openai_settings(openai_api, embed_dimensions=64))
    texts = [f"article {i} about topic {i * 7}" for i in range(OPENAI_EMBED_BATCH + 3)]

    vectors = embeddings.embed_documents(texts)

    for text, vector in zip(texts, vectors, strict=True):  # float32 on the wire
        assert vector == pytest.approx(hashed_embedding(text, 64), abs=1e-6)
    assert [len(r["input"]) for r in openai_api.embedding_requests] == [OPENAI_EMBED_BATCH, 3]
    assert {r["dimensions"] for r in openai_api.embedding_requests} == {64}


def test_openai_chat_sends_system_sources_and_history(openai_api: OpenAiEmulator) -> None:
    chat = build_chat_model(openai_settings(openai_api))
    assert chat is not None

    reply = chat.invoke(CONVERSATION)

    assert reply.text == EXPECTED
    assert reply.response_metadata["finish_reason"] == "stop"
    sent = openai_api.last_chat
    assert sent.model == "gpt-4o-mini"
    assert sent.system == SYSTEM
    assert [m["role"] for m in sent.messages] == ["user", "assistant", "user"]
    assert sent.messages[-1]["content"] == QUESTION
    assert (sent.temperature, sent.max_tokens, sent.stream) == (0.0, 512, False)
    assert openai_api.requests[-1].auth == "Bearer"


def test_openai_chat_streams_server_sent_events(openai_api: OpenAiEmulator) -> None:
    openai_api.responder = lambda system, messages: "Reset it under Settings > Security [1]."
    chat = build_chat_model(openai_settings(openai_api))
    assert chat is not None

    chunks = [chunk.text for chunk in chat.stream(CONVERSATION)]

    assert "".join(chunks) == "Reset it under Settings > Security [1]."
    assert len([c for c in chunks if c]) == 7  # token by token
    assert openai_api.last_chat.stream and openai_api.last_chat.system == SYSTEM


def test_openai_chat_async_calls_map_errors_too(openai_api: OpenAiEmulator) -> None:
    from langchain_openai import ChatOpenAI

    chat = build_chat_model(openai_settings(openai_api, provider_max_retries=0))
    assert isinstance(chat, ChatOpenAI)  # the LangChain class, with errors mapped

    async def ask() -> str:
        return (await chat.ainvoke(CONVERSATION)).text

    assert asyncio.run(ask()) == EXPECTED
    openai_api.fail_with = 503
    with pytest.raises(UnavailableError):
        asyncio.run(ask())


def test_openai_max_tokens_cuts_the_answer(openai_api: OpenAiEmulator) -> None:
    chat = build_chat_model(openai_settings(openai_api, llm_max_tokens=3))
    assert chat is not None

    reply = chat.invoke(CONVERSATION)

    assert reply.text == "Answer from [1] "
    assert reply.response_metadata["finish_reason"] == "length"


def test_openai_wrong_key_is_a_configuration_error(openai_api: OpenAiEmulator) -> None:
    settings = openai_settings(openai_api, openai_api_key="sk-wrong-key-123456")
    chat = build_chat_model(settings)
    assert chat is not None

    with pytest.raises(BadRequestError, match="Incorrect API key") as chat_error:
        chat.invoke(CONVERSATION)
    with pytest.raises(BadRequestError, match="Incorrect API key") as embed_error:
        build_embeddings(settings).embed_documents(DOCS)

    assert chat_error.value.field == embed_error.value.field == "openai_api_key"
    assert "sk-wrong-key-123456" not in str(chat_error.value)
    assert [r.status for r in openai_api.requests] == [401, 401]  # not retried


def test_openai_needs_a_key_unless_pointed_at_a_local_server(
    openai_api: OpenAiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    with pytest.raises(BadRequestError) as error:
        build_chat_model(ProviderSettings(llm="openai"))
    assert error.value.field == "openai_api_key"

    # A local server (Ollama, vLLM) takes any key: the emulator here insists on its own.
    chat = build_chat_model(openai_settings(openai_api, openai_api_key=None))
    assert chat is not None
    with pytest.raises(BadRequestError, match="Incorrect API key"):
        chat.invoke("hello")


def test_openai_unknown_model_is_a_configuration_error(openai_api: OpenAiEmulator) -> None:
    chat = build_chat_model(openai_settings(openai_api, openai_chat_model="gpt-9"))
    assert chat is not None

    with pytest.raises(BadRequestError, match="does not exist") as error:
        chat.invoke(CONVERSATION)

    assert error.value.field == "openai_chat_model"


@pytest.mark.parametrize("status", [500, 503])
def test_openai_outage_is_unavailable(openai_api: OpenAiEmulator, status: int) -> None:
    openai_api.fail_with = status
    settings = openai_settings(openai_api, provider_max_retries=0)
    embeddings, chat = build_embeddings(settings), build_chat_model(settings)
    assert chat is not None

    with pytest.raises(UnavailableError, match=str(status)):
        embeddings.embed_documents(DOCS)
    with pytest.raises(UnavailableError, match=str(status)):
        chat.invoke(CONVERSATION)
    with pytest.raises(UnavailableError, match=str(status)):
        list(chat.stream(CONVERSATION))


def test_openai_retries_once_then_gives_up(openai_api: OpenAiEmulator) -> None:
    openai_api.fail_with = 503
    chat = build_chat_model(openai_settings(openai_api, provider_max_retries=1))
    assert chat is not None

    with pytest.raises(UnavailableError):
        chat.invoke(CONVERSATION)

    assert [r.status for r in openai_api.requests] == [503, 503]


def test_openai_timeout_and_unreachable_are_unavailable(openai_api: OpenAiEmulator) -> None:
    openai_api.delay = 3
    slow = build_chat_model(
        openai_settings(openai_api, llm_timeout_seconds=0.3, provider_max_retries=0)
    )
    assert slow is not None
    started = time.monotonic()
    with pytest.raises(UnavailableError):
        slow.invoke(CONVERSATION)
    assert time.monotonic() - started < 2

    closed = f"http://127.0.0.1:{free_port()}/v1"
    settings = openai_settings(openai_api, openai_base_url=closed, provider_max_retries=0)
    with pytest.raises(UnavailableError):
        build_embeddings(settings).embed_query(QUESTION)


# --- the emulators as processes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "module", ["copilot_dev.emulators.bedrock", "copilot_dev.emulators.openai_api"]
)
def test_emulators_run_as_modules(module: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in banner
        if module.endswith("bedrock"):
            response = requests.post(f"http://127.0.0.1:{port}/model/m/invoke", timeout=5)
            assert response.status_code == 403  # unsigned
        else:
            response = requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
            assert response.status_code == 401  # no API key
    finally:
        proc.terminate()
        proc.wait(10)
