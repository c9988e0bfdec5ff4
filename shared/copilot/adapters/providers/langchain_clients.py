"""The LangChain objects :mod:`copilot.adapters.providers.factory` hands out: provider models whose failures
arrive as the project's errors. Imported only when a provider model is built."""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from langchain_core.embeddings import Embeddings

from copilot.adapters.providers.errors import provider_errors
from copilot.errors import UnavailableError

if TYPE_CHECKING:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatGenerationChunk, ChatResult

    _ChatBase = BaseChatModel
else:
    _ChatBase = object


class ProviderEmbeddings(Embeddings):
    """A provider's LangChain embeddings, with provider failures mapped and large batches
    spread over ``parallelism`` concurrent requests (Titan embeds one text per request)."""

    def __init__(
        self,
        inner: Embeddings,
        *,
        model_id: str,
        provider: str,
        model_field: str,
        parallelism: int = 1,
    ) -> None:
        self.inner = inner
        self.model_id = model_id
        self.provider = provider
        self.model_field = model_field
        self.parallelism = max(1, parallelism)

    def __repr__(self) -> str:
        return f"ProviderEmbeddings({self.model_id!r})"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        texts = list(texts)
        with provider_errors(self.provider, model_field=self.model_field):
            workers = min(self.parallelism, len(texts))
            if workers == 1:
                vectors = self.inner.embed_documents(texts)
            else:
                size = -(-len(texts) // workers)  # ceil: contiguous slices keep the order
                slices = [texts[i : i + size] for i in range(0, len(texts), size)]
                with ThreadPoolExecutor(len(slices), thread_name_prefix="embed") as pool:
                    parts = list(pool.map(self.inner.embed_documents, slices))
                vectors = [vector for part in parts for vector in part]
        if len(vectors) != len(texts):
            raise UnavailableError(
                f"{self.provider} returned {len(vectors)} embeddings for {len(texts)} texts"
            )
        return vectors

    def embed_query(self, text: str) -> list[float]:
        with provider_errors(self.provider, model_field=self.model_field):
            return self.inner.embed_query(text)


class ProviderErrorsMixin(_ChatBase):
    """Put before a LangChain chat model class: its calls (invoke, stream, batch, async, in
    chains, with tools bound) raise UnavailableError/BadRequestError for provider failures."""

    copilot_provider: ClassVar[str] = "model provider"
    copilot_model_field: ClassVar[str | None] = None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with provider_errors(self.copilot_provider, model_field=self.copilot_model_field):
            return super()._generate(messages, stop, run_manager, **kwargs)  # type: ignore[safe-super]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with provider_errors(self.copilot_provider, model_field=self.copilot_model_field):
            yield from super()._stream(messages, stop, run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with provider_errors(self.copilot_provider, model_field=self.copilot_model_field):
            return await super()._agenerate(messages, stop, run_manager, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        with provider_errors(self.copilot_provider, model_field=self.copilot_model_field):
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk


class _LazyClient:
    """A boto3 client made on first use. ChatBedrockConverse builds a control-plane ``bedrock``
    client (a large service model to parse) that it only needs for application inference
    profile ARNs; this defers that cost to the rare model that needs it."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
        return getattr(self._client, name)


def bedrock_clients(
    region: str, endpoint_url: str | None, timeout: float, max_retries: int
) -> tuple[Any, Any]:
    """(bedrock-runtime client, lazy control-plane client). The composition root makes them
    once and shares them between the embeddings and the chat model: boto3 clients are
    thread-safe, and each costs a service-model parse."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=min(timeout, 5.0),
        read_timeout=timeout,  # per read: between two chunks when streaming
        # "standard" retries throttling and 5xx with jittered backoff; the total counts the
        # first attempt.
        retries={"mode": "standard", "total_max_attempts": 1 + max_retries},
        user_agent_appid="copilot",
    )
    runtime = boto3.client(
        "bedrock-runtime", region_name=region, endpoint_url=endpoint_url, config=config
    )
    control = _LazyClient(
        lambda: boto3.client(
            "bedrock", region_name=region, endpoint_url=endpoint_url, config=config
        )
    )
    return runtime, control


@functools.cache
def bedrock_chat_class() -> type[BaseChatModel]:
    from langchain_aws import ChatBedrockConverse

    class CopilotChatBedrockConverse(ProviderErrorsMixin, ChatBedrockConverse):
        copilot_provider: ClassVar[str] = "bedrock"
        copilot_model_field: ClassVar[str | None] = "bedrock_chat_model"

    return CopilotChatBedrockConverse


@functools.cache
def openai_chat_class() -> type[BaseChatModel]:
    from langchain_openai import ChatOpenAI

    class CopilotChatOpenAI(ProviderErrorsMixin, ChatOpenAI):
        copilot_provider: ClassVar[str] = "openai"
        copilot_model_field: ClassVar[str | None] = "openai_chat_model"

    return CopilotChatOpenAI
