"""Model providers behind LangChain's interfaces: embeddings and (optionally) a chat model.

::

    settings = ProviderSettings()                  # copilot.config: COPILOT_EMBEDDER, ...
    embeddings = build_embeddings(settings)        # langchain_core Embeddings
    index_model = embedding_model_id(settings)     # copilot.config: "bedrock:amazon.titan-..."
    chat = build_chat_model(settings)              # BaseChatModel, or None for COPILOT_LLM=none

Providers: ``minilm`` (the offline default: all-MiniLM-L6-v2, int8 ONNX, in-process),
``mpnet`` (optional, quality first: all-mpnet-base-v2 on numpy, from its wheels),
``wordllama`` (offline static embeddings: fast to index, weaker at paraphrase), ``bedrock`` (Titan embeddings over InvokeModel,
chat over the Converse API, through ``langchain_aws``) and ``openai`` (the OpenAI API or any
server that speaks it: Ollama, vLLM, LiteLLM, gateways; through ``langchain_openai``).

Errors: what these builders return raises :class:`~copilot.errors.UnavailableError` when the
provider is down, throttling, timing out or unreachable, and
:class:`~copilot.errors.BadRequestError` when the configuration is wrong (key, credentials,
model access, unknown model) -- on every call path (``invoke``, ``stream``, ``batch``, async,
inside chains, with tools bound), so callers need no provider-specific ``except``. The
embeddings are wrapped; the chat models are subclasses of the LangChain classes
(``isinstance(chat, ChatOpenAI)`` still holds) whose ``_generate``/``_stream`` map errors.
For a raw client call use :func:`call_with_provider_errors`.

Importing this module is cheap: ``langchain_aws``, ``langchain_openai``, ``boto3`` and even
``langchain_core`` are imported by the builders, not here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from copilot.adapters.providers.errors import (
    call_with_provider_errors,
    map_provider_error,
    provider_errors,
)
from copilot.config import ProviderSettings, embedding_model_id
from copilot.errors import BadRequestError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

# Bedrock's InvokeModel embeds one text per request (Titan): a batch is spread over this many
# concurrent requests. OpenAI's endpoint takes a list: this many texts per request (the API
# allows 2048 inputs and 300k tokens per request; local servers often less).
BEDROCK_EMBED_PARALLELISM = 4
OPENAI_EMBED_BATCH = 128


BedrockClients = Callable[[], tuple[Any, Any]]


def build_embeddings(
    settings: ProviderSettings, bedrock: BedrockClients | None = None
) -> Embeddings:
    """The configured embedding model (batched: ``embed_documents`` takes a list). ``bedrock``
    gives the shared Bedrock clients (the composition root's); without it, new ones."""
    if settings.embedder == "minilm":
        from copilot.adapters.providers.offline import MiniLMEmbeddings

        return MiniLMEmbeddings()
    if settings.embedder == "wordllama":
        from copilot.adapters.providers.offline import WordLlamaEmbeddings

        return WordLlamaEmbeddings()
    if settings.embedder == "mpnet":
        from copilot.adapters.providers.mpnet import MPNetEmbeddings

        return MPNetEmbeddings()

    from copilot.adapters.providers.langchain_clients import ProviderEmbeddings

    inner: Embeddings
    if settings.embedder == "bedrock":
        from langchain_aws import BedrockEmbeddings

        with provider_errors("bedrock"):  # builds a boto3 client: region/credentials errors
            runtime, _ = (bedrock or (lambda: new_bedrock_clients(settings)))()
            inner = BedrockEmbeddings(
                client=runtime,
                model_id=settings.bedrock_embed_model,
                region_name=settings.region,
                dimensions=settings.embed_dimensions,
            )
        return ProviderEmbeddings(
            inner,
            model_id=embedding_model_id(settings),
            provider="bedrock",
            model_field="bedrock_embed_model",
            parallelism=BEDROCK_EMBED_PARALLELISM,
        )
    if settings.embedder == "openai":
        from langchain_openai import OpenAIEmbeddings

        with provider_errors("openai"):
            inner = OpenAIEmbeddings(
                model=settings.openai_embed_model,
                openai_api_base=settings.openai_base_url,
                openai_api_key=_openai_api_key(settings),
                # Send text, not tiktoken token ids: tiktoken downloads its encodings at run
                # time, and OpenAI-compatible servers expect text anyway.
                check_embedding_ctx_length=False,
                chunk_size=OPENAI_EMBED_BATCH,
                dimensions=settings.embed_dimensions,
                request_timeout=settings.llm_timeout_seconds,
                max_retries=settings.provider_max_retries,
            )
        return ProviderEmbeddings(
            inner,
            model_id=embedding_model_id(settings),
            provider="openai",
            model_field="openai_embed_model",
        )
    raise _unknown("embedder", settings.embedder)  # pragma: no cover - Literal


def build_chat_model(
    settings: ProviderSettings, bedrock: BedrockClients | None = None
) -> BaseChatModel | None:
    """The configured chat model, or None when answers are extractive (``llm = "none"``)."""
    if settings.llm == "none":
        return None
    if settings.llm == "bedrock":
        from copilot.adapters.providers.langchain_clients import bedrock_chat_class

        with provider_errors("bedrock"):
            runtime, control = (bedrock or (lambda: new_bedrock_clients(settings)))()
            return bedrock_chat_class()(
                client=runtime,
                bedrock_client=control,
                model=settings.bedrock_chat_model,
                region_name=settings.region,
                temperature=settings.llm_temperature,
                max_tokens=settings.llm_max_tokens,
            )
    if settings.llm == "openai":
        from copilot.adapters.providers.langchain_clients import openai_chat_class

        with provider_errors("openai"):
            return openai_chat_class()(
                model=settings.openai_chat_model,
                base_url=settings.openai_base_url,
                api_key=_openai_api_key(settings),
                temperature=settings.llm_temperature,
                max_tokens=settings.llm_max_tokens,
                timeout=settings.llm_timeout_seconds,
                max_retries=settings.provider_max_retries,
            )
    raise _unknown("llm", settings.llm)  # pragma: no cover - Literal


def new_bedrock_clients(settings: ProviderSettings) -> tuple[Any, Any]:
    """The boto3 clients (runtime, control plane) for these settings."""
    from copilot.adapters.providers.langchain_clients import bedrock_clients

    return bedrock_clients(
        settings.region,
        settings.bedrock_endpoint_url,
        settings.llm_timeout_seconds,
        settings.provider_max_retries,
    )


def _openai_api_key(settings: ProviderSettings) -> SecretStr | None:
    """The key to send; None lets the client read OPENAI_API_KEY."""
    if settings.openai_api_key is not None:
        return settings.openai_api_key
    if os.environ.get("OPENAI_API_KEY"):
        return None
    if settings.openai_base_url:
        return SecretStr("unused")  # local servers (Ollama, vLLM) ignore the key
    raise BadRequestError(
        "the OpenAI API needs a key: set COPILOT_OPENAI_API_KEY (or OPENAI_API_KEY), or point "
        "COPILOT_OPENAI_BASE_URL at an OpenAI-compatible server",
        field="openai_api_key",
    )


def _unknown(field: str, value: str) -> BadRequestError:
    return BadRequestError(f"unknown {field} '{value}'", field=field)


__all__ = [
    "build_chat_model",
    "build_embeddings",
    "call_with_provider_errors",
    "map_provider_error",
    "new_bedrock_clients",
    "provider_errors",
]
