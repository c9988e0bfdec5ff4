"""The composition root: builds adapters and services from settings, once per process."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from copilot.admin.origins import CopilotOrigins
from copilot.admin.service import AdminService
from copilot.config import Settings
from copilot.conversation.limits import ChatLimits
from copilot.conversation.service import ConversationService
from copilot.errors import UnavailableError
from copilot.handoff.service import HandoffConfig, HandoffService
from copilot.ingest.service import IngestService
from copilot.knowledge.answer import KnowledgeAnswerer
from copilot.knowledge.lexical_snapshots import LexicalMaintainer, LexicalReader
from copilot.ports import (
    BlobStore,
    ConversationStore,
    CopilotRegistry,
    DocumentStore,
    EventQueue,
    HubAdapter,
    HubOutbox,
    KnowledgeIndex,
    LexicalStore,
    RateLimitStore,
    SecretStore,
    StateStore,
)
from copilot.sources.service import SourcesService

if TYPE_CHECKING:
    from collections.abc import Callable

    from langchain_core.embeddings import Embeddings

    from copilot.analytics.report import AnalyticsReporter
    from copilot.analytics.service import AnalyticsService
    from copilot.entrypoints.analytics import AnalyticsHandler
    from copilot.entrypoints.http.router import Api
    from copilot.entrypoints.ingest import IngestHandler
    from copilot.entrypoints.outbox import OutboxHandler
    from copilot.sources.kb.base import KbSource

log = logging.getLogger(__name__)


class Container:
    """Lazily built dependencies. Pass overrides (fakes, pre-built clients) in tests."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or Settings()
        self._overrides = overrides
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._prewarm_started = False

    def _get(self, name: str, build: Any) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    def _client(self, service: str) -> Any:
        from copilot.adapters.aws.session import aws_client, new_session

        session = self._get("aws_session", new_session)
        return self._get(f"{service}_client", lambda: aws_client(self.settings, service, session))

    @property
    def copilots(self) -> CopilotRegistry:
        from copilot.adapters.aws.dynamo import DynamoCopilotRegistry

        return self._get(
            "copilots",
            lambda: DynamoCopilotRegistry(self._client("dynamodb"), self.settings.copilots_table),
        )

    @property
    def conversations(self) -> ConversationStore:
        from copilot.adapters.aws.dynamo import DynamoConversationStore

        s = self.settings
        return self._get(
            "conversations",
            lambda: DynamoConversationStore(
                self._client("dynamodb"),
                s.conversations_table,
                s.conversation_ttl_days,
                events_table=s.analytics_table or None,
                events_buffer_hours=s.analytics_buffer_hours,
            ),
        )

    @property
    def documents(self) -> DocumentStore:
        from copilot.adapters.aws.dynamo import DynamoDocumentStore

        return self._get(
            "documents",
            lambda: DynamoDocumentStore(self._client("dynamodb"), self.settings.documents_table),
        )

    @property
    def state(self) -> StateStore:
        from copilot.adapters.aws.dynamo import DynamoDocumentStore

        documents = self.documents
        if "state" not in self._overrides and isinstance(documents, DynamoDocumentStore):
            return documents  # state items live in the documents table
        return self._get("state", lambda: _missing("state"))

    @property
    def blobs(self) -> BlobStore:
        from copilot.adapters.aws.s3 import S3BlobStore

        return self._get("blobs", lambda: S3BlobStore(self._client("s3"), self.settings.bucket))

    @property
    def index(self) -> KnowledgeIndex:
        def build() -> KnowledgeIndex:
            from copilot.adapters.chroma import ChromaKnowledgeIndex
            from copilot.config import embedding_model_id

            token = self.settings.chroma_token
            return ChromaKnowledgeIndex(
                self.settings.chroma_url,
                token=token.get_secret_value() if token else None,
                embedder_id=embedding_model_id(self.settings),
            )

        return self._get("index", build)

    @property
    def embedder(self) -> Embeddings:
        from copilot.adapters.providers.factory import build_embeddings

        return self._get("embedder", lambda: build_embeddings(self.settings, self._bedrock))

    @property
    def chat_model(self) -> Any:
        """The configured LLM (LangChain chat model), or None for the offline default."""
        from copilot.adapters.providers.factory import build_chat_model

        return self._get("chat_model", lambda: build_chat_model(self.settings, self._bedrock))

    def _bedrock(self) -> tuple[Any, Any]:
        """Bedrock's clients, shared by the embeddings and the chat model."""
        from copilot.adapters.providers.factory import new_bedrock_clients

        return self._get("bedrock_clients", lambda: new_bedrock_clients(self.settings))

    @property
    def answerer(self) -> KnowledgeAnswerer:
        def build() -> KnowledgeAnswerer:
            from copilot.knowledge.retrieval import HybridRetriever

            retriever = HybridRetriever(
                self.index, self.embedder, self.documents, self.lexical_reader
            )
            model = self.chat_model
            if model is None:
                return KnowledgeAnswerer(retriever)
            from copilot.knowledge.generation import LlmAnswerer, LlmCondenser

            return KnowledgeAnswerer(
                retriever,
                generator=LlmAnswerer(model),
                condenser=LlmCondenser(model),
            )

        return self._get("answerer", build)

    @property
    def chat(self) -> ConversationService:
        def build() -> ConversationService:
            return ConversationService(
                self.copilots,
                self.conversations,
                lambda: self.answerer,
                handoff=self.handoff,
                prewarm=self.prewarm_models,
            )

        return self._get("chat", build)

    def prewarm_models(self) -> None:
        """Load the embedding model on a background thread, once per container (onnxruntime
        releases the GIL while it builds the session). Errors surface on first real use."""
        with self._lock:
            if self._prewarm_started:
                return
            self._prewarm_started = True
        warm = getattr(self.embedder, "warm", None)
        if callable(warm):
            thread = threading.Thread(target=_quietly(warm), name="prewarm-models", daemon=True)
            thread.start()
            # A process ending while onnxruntime still builds its session aborts (SIGABRT, exit
            # 134: a short test run, a CLI call): the exit waits for the load instead.
            atexit.register(thread.join, 60)

    @property
    def hub_outbox(self) -> HubOutbox:
        from copilot.adapters.aws.sqs import SqsHubOutbox

        def build() -> HubOutbox:
            if not self.settings.hub_outbox_queue_url:
                raise UnavailableError("COPILOT_HUB_OUTBOX_QUEUE_URL is not configured")
            return SqsHubOutbox(self._client("sqs"), self.settings.hub_outbox_queue_url)

        return self._get("hub_outbox", build)

    @property
    def hub_pull_queue(self) -> EventQueue:
        from copilot.adapters.aws.sqs import SqsEventQueue

        def build() -> EventQueue:
            if not self.settings.hub_pull_queue_url:
                raise UnavailableError("COPILOT_HUB_PULL_QUEUE_URL is not configured")
            return SqsEventQueue(self._client("sqs"), self.settings.hub_pull_queue_url)

        return self._get("hub_pull_queue", build)

    @property
    def hub_secrets(self) -> SecretStore:
        from copilot.adapters.aws.secrets import EnvSsmSecretStore

        return self._get(
            "hub_secrets",
            lambda: EnvSsmSecretStore(
                os.environ,
                ssm=lambda: self._client("ssm"),
                ssm_prefix=self.settings.hub_secret_ssm_prefix,
            ),
        )

    def hub(self, hub_type: str) -> HubAdapter:
        from copilot.handoff.hubs import adapter_for

        if "hubs" in self._overrides:  # tests: {"generic": CollectingHub(), ...}
            return self._overrides["hubs"][hub_type]
        s = self.settings
        return self._get(
            f"hub:{hub_type}",
            lambda: adapter_for(
                hub_type,
                timeout=s.hub_timeout_seconds,
                tolerance=s.webhook_tolerance_seconds,
                sns_cert_hosts=s.sns_cert_hosts,
            ),
        )

    @property
    def handoff(self) -> HandoffService:
        def build() -> HandoffService:
            s = self.settings
            return HandoffService(
                self.copilots,
                self.conversations,
                outbox=lambda: self.hub_outbox,
                secrets=lambda: self.hub_secrets,
                hubs=self.hub,
                config=HandoffConfig(
                    reorder_window=s.handoff_reorder_window_seconds,
                    max_ahead=s.handoff_max_sequence_ahead,
                    max_attempts=s.hub_max_attempts,
                    reply_to=s.handoff_public_url,
                    request_interval=s.rate_limits_enabled,
                    pull_window=s.hub_pull_window_seconds,
                ),
                pull_queue=lambda: self.hub_pull_queue,
            )

        return self._get("handoff", build)

    @property
    def rate_limits(self) -> RateLimitStore:
        from copilot.adapters.aws.rate_limits import DynamoRateLimitStore

        return self._get(
            "rate_limits",
            lambda: DynamoRateLimitStore(
                self._client("dynamodb"), self.settings.conversations_table
            ),
        )

    @property
    def chat_limits(self) -> ChatLimits:
        def build() -> ChatLimits:
            return ChatLimits(
                lambda: self.rate_limits,
                lambda: self.copilots,
                lambda: self.conversations,
                enabled=self.settings.rate_limits_enabled,
            )

        return self._get("chat_limits", build)

    @property
    def chat_origins(self) -> CopilotOrigins:
        return self._get(
            "chat_origins",
            lambda: CopilotOrigins(lambda: self.copilots, lambda: self.conversations),
        )

    @property
    def ingest_queue(self) -> EventQueue:
        from copilot.adapters.aws.sqs import SqsEventQueue

        def build() -> EventQueue:
            if not self.settings.ingest_queue_url:
                raise UnavailableError("COPILOT_INGEST_QUEUE_URL is not configured")
            return SqsEventQueue(self._client("sqs"), self.settings.ingest_queue_url)

        return self._get("ingest_queue", build)

    @property
    def admin(self) -> AdminService:
        def build() -> AdminService:
            return AdminService(
                self.copilots,
                self.documents,
                index=lambda: self.index,
                blobs=lambda: self.blobs,
                ingest_queue=lambda: self.ingest_queue,
                bucket=self.settings.bucket,
            )

        return self._get("admin", build)

    @property
    def lexical_store(self) -> LexicalStore:
        from copilot.adapters.aws.lexical_store import DynamoS3LexicalStore

        return self._get(
            "lexical_store",
            lambda: DynamoS3LexicalStore(
                self._client("dynamodb"),
                self.settings.documents_table,
                self._client("s3"),
                self.settings.bucket,
            ),
        )

    @property
    def lexical(self) -> LexicalMaintainer:
        def build() -> LexicalMaintainer:
            def queue() -> EventQueue | None:
                if "ingest_queue" in self._overrides or self.settings.ingest_queue_url:
                    return self.ingest_queue
                return None

            return LexicalMaintainer(self.lexical_store, lambda: self.index, self.documents, queue)

        return self._get("lexical", build)

    @property
    def lexical_reader(self) -> LexicalReader:
        def build() -> LexicalReader:
            return LexicalReader(self.lexical_store)

        return self._get("lexical_reader", build)

    @property
    def ingest(self) -> IngestService:
        def build() -> IngestService:
            return IngestService(
                self.copilots,
                self.documents,
                self.blobs,
                index=lambda: self.index,
                embedder=lambda: self.embedder,
                max_bytes=self.settings.max_upload_bytes,
                bucket=self.settings.bucket,
                lexical=self.lexical,
            )

        return self._get("ingest", build)

    @property
    def sources(self) -> SourcesService:
        def build() -> SourcesService:
            return SourcesService(self.copilots, self.blobs, self.state, kb_source=self.kb_source)

        return self._get("sources", build)

    def kb_source(self, name: str) -> KbSource:
        """A knowledge-base connector, once per process: its HTTP session and OAuth token are
        reused by every sync."""
        from copilot.sources.service import kb_source_from_settings

        return self._get(f"kb:{name}", lambda: kb_source_from_settings(name))

    # --- what the functions serve: routes and event handlers, given their services ----------

    @property
    def chat_api(self) -> Api:
        def build() -> Api:
            from copilot.entrypoints.http.chat_routes import ChatRoutes

            routes = ChatRoutes(
                chat=lambda: self.chat,
                admin=lambda: self.admin,
                admin_api_key=self.admin_api_key,
                limits=lambda: self.chat_limits,
                forwarded_hops=self.settings.forwarded_hops,
                origins=lambda: self.chat_origins,
                answerer=lambda: self.answerer,
                analytics=lambda: self.analytics,
            )
            return routes.api

        return self._get("chat_api", build)

    @property
    def handoff_api(self) -> Api:
        def build() -> Api:
            from copilot.entrypoints.http.handoff_routes import HandoffRoutes

            return HandoffRoutes(handoff=lambda: self.handoff).api

        return self._get("handoff_api", build)

    @property
    def ingest_handler(self) -> IngestHandler:
        def build() -> IngestHandler:
            from copilot.entrypoints.ingest import IngestHandler

            return IngestHandler(
                ingest=lambda: self.ingest,
                lexical=lambda: self.lexical,
                sources=lambda: self.sources,
            )

        return self._get("ingest_handler", build)

    @property
    def analytics_archive(self) -> BlobStore:
        from copilot.adapters.aws.s3 import S3BlobStore

        return self._get(
            "analytics_archive",
            lambda: S3BlobStore(
                self._client("s3"), self.settings.analytics_bucket, what="the analytics bucket"
            ),
        )

    @property
    def analytics_reporter(self) -> AnalyticsReporter:
        def build() -> AnalyticsReporter:
            from copilot.analytics.clusters import WORDLLAMA_THRESHOLD
            from copilot.analytics.report import AnalyticsReporter

            # Unanswered questions are grouped with the copilots' own embedder (each model
            # has its own similarity scale: copilot.analytics.clusters).
            threshold = WORDLLAMA_THRESHOLD if self.settings.embedder == "wordllama" else None
            return AnalyticsReporter(
                self.analytics_archive,
                embedder=lambda: self.embedder,
                cluster_threshold=threshold,
            )

        return self._get("analytics_reporter", build)

    @property
    def analytics(self) -> AnalyticsService:
        def build() -> AnalyticsService:
            from copilot.analytics.service import AnalyticsService

            return AnalyticsService(
                self.copilots,
                self.conversations,
                self.analytics_reporter,
                retention_days=self.settings.analytics_retention_days,
            )

        return self._get("analytics", build)

    @property
    def analytics_handler(self) -> AnalyticsHandler:
        def build() -> AnalyticsHandler:
            from copilot.analytics.export import EventExporter
            from copilot.entrypoints.analytics import AnalyticsHandler

            return AnalyticsHandler(lambda: EventExporter(self.analytics_archive))

        return self._get("analytics_handler", build)

    @property
    def outbox_handler(self) -> OutboxHandler:
        def build() -> OutboxHandler:
            from copilot.entrypoints.outbox import OutboxHandler, OutboxPolicy

            s = self.settings
            policy = OutboxPolicy(
                s.hub_max_attempts, s.hub_backoff_base_seconds, s.hub_backoff_max_seconds
            )
            return OutboxHandler(
                handoff=lambda: self.handoff, outbox=lambda: self.hub_outbox, policy=policy
            )

        return self._get("outbox_handler", build)

    def lambda_http(self, api: Api) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """The Lambda handler (API Gateway HTTP API v2 events) of one of the HTTP APIs."""

        def build() -> Any:
            from copilot.entrypoints.http.lambda_adapter import lambda_handler_for

            return lambda_handler_for(api)

        return self._get(f"lambda:{api.title}", build)

    def admin_api_key(self) -> str | None:
        def load() -> str | None:
            s = self.settings
            if s.admin_api_key is not None:
                return s.admin_api_key.get_secret_value()
            if s.admin_api_key_ssm_param:
                response = self._client("ssm").get_parameter(
                    Name=s.admin_api_key_ssm_param, WithDecryption=True
                )
                return str(response["Parameter"]["Value"])
            return None

        return self._get("admin_api_key", load)


def _quietly(job: Any) -> Any:
    def run() -> None:
        try:
            job()
        except Exception:  # the same error is raised, and mapped, on the first real call
            log.debug("prewarming failed", exc_info=True)

    return run


def _missing(name: str) -> Any:
    raise RuntimeError(f"no '{name}' adapter: pass one to Container(...)")


_container: Container | None = None
_container_lock = threading.Lock()


def container() -> Container:
    """The process-wide container (warm invocations reuse its clients). Only the functions'
    entry files (functions/*/main.py) call this; everything below gets what it needs injected."""
    global _container
    with _container_lock:
        if _container is None:
            _container = Container()
        return _container


def set_container(value: Container | None) -> None:
    global _container
    with _container_lock:
        _container = value
