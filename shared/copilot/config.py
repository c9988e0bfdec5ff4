"""Typed settings from ``COPILOT_*`` environment variables.

The model-provider part (which embedder and LLM, and the id an index records for the
embedder's vectors) lives here too, not beside the provider adapters: configuration is read
by every layer and depends on none of them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from copilot.errors import BadRequestError

# The offline embedders' ids (copilot.adapters.providers.offline), as an index records them.
MINILM_MODEL_ID = "all-minilm-l6-v2-int8"
WORDLLAMA_MODEL_ID = "wordllama-l2-supercat-256"
MPNET_MODEL_ID = "all-mpnet-base-v2"  # copilot.adapters.providers.mpnet


class ProviderSettings(BaseSettings):
    """Which models answer, from ``COPILOT_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="COPILOT_", extra="ignore")

    embedder: Literal["minilm", "mpnet", "wordllama", "bedrock", "openai"] = "minilm"
    llm: Literal["none", "bedrock", "openai"] = "none"
    region: str = "us-east-1"

    bedrock_embed_model: str = "amazon.titan-embed-text-v2:0"
    bedrock_chat_model: str = "anthropic.claude-3-haiku-20240307-v1:0"
    bedrock_endpoint_url: str | None = Field(
        default=None, description="Bedrock Runtime endpoint: a VPC endpoint or an emulator."
    )

    openai_base_url: str | None = Field(
        default=None,
        description="An OpenAI-compatible API (Ollama, vLLM, a gateway), with its /v1.",
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        description="Falls back to OPENAI_API_KEY; may be left out with a local openai_base_url.",
    )
    openai_embed_model: str = "text-embedding-3-small"
    openai_chat_model: str = "gpt-4o-mini"

    embed_dimensions: int | None = Field(
        default=None,
        ge=1,
        description="Shorter vectors where the model allows it (Titan v2: 256/512/1024; "
        "text-embedding-3-*). Part of the embedding model id.",
    )
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    llm_timeout_seconds: float = Field(
        default=20.0, gt=0, description="Per request (embeddings too); per read when streaming."
    )
    llm_max_tokens: int = Field(default=512, ge=1)
    provider_max_retries: int = Field(
        default=1, ge=0, description="Retries of a throttled/failed provider request."
    )


def embedding_model_id(settings: ProviderSettings) -> str:
    """A stable name for the vectors ``build_embeddings(settings)`` makes: an index records
    it, and is never queried with vectors from another model."""
    # Named here, not read off the classes: copilot.adapters.providers.offline imports
    # langchain_core, which the index client (the chat function's cold path) does not need.
    if settings.embedder == "minilm":
        return MINILM_MODEL_ID
    if settings.embedder == "wordllama":
        return WORDLLAMA_MODEL_ID
    if settings.embedder == "mpnet":
        return MPNET_MODEL_ID
    if settings.embedder == "bedrock":
        name = f"bedrock:{settings.bedrock_embed_model}"
    elif settings.embedder == "openai":
        name = f"openai:{settings.openai_embed_model}"
    else:  # pragma: no cover - the Literal type rules it out
        raise BadRequestError(f"unknown embedder '{settings.embedder}'", field="embedder")
    return f"{name}@{settings.embed_dimensions}" if settings.embed_dimensions else name


class Settings(ProviderSettings):
    """Typed configuration; every value comes from ``COPILOT_*`` environment variables.

    Model providers (embedder, LLM, their endpoints and keys) are ProviderSettings' fields.
    """

    model_config = SettingsConfigDict(env_prefix="COPILOT_", extra="ignore")

    aws_endpoint_url: str | None = Field(
        default=None, description="Emulated AWS endpoint (moto server) for the local stack."
    )
    copilots_table: str = "copilot-copilots"
    conversations_table: str = "copilot-conversations"
    documents_table: str = "copilot-documents"
    bucket: str = "copilot-knowledge"
    ingest_queue_url: str | None = None

    chroma_url: str = "http://127.0.0.1:8000"
    chroma_token: SecretStr | None = None

    admin_api_key: SecretStr | None = None
    admin_api_key_ssm_param: str | None = Field(
        default=None, description="SSM SecureString holding the admin key (AWS deployments)."
    )

    log_level: str = Field(
        default="INFO",
        pattern=r"(?i)^(debug|info|warning|error|critical)$",
        description="Log level (any case); read at import by observability.configure_logging.",
    )

    # Analytics (copilot.analytics; docs/analytics.md)
    analytics_table: str | None = Field(
        default="copilot-analytics-events",
        description="DynamoDB table the analytics events are written to with each change "
        "(its stream feeds the archive); empty: no analytics are recorded.",
    )
    analytics_bucket: str = Field(
        default="copilot-analytics",
        description="S3 bucket of the event archive (events/copilot=<id>/dt=<day>/*.jsonl.gz); "
        "its lifecycle rule is the retention (serverless.yml: analyticsRetentionDays).",
    )
    analytics_buffer_hours: int = Field(
        default=48, ge=25, le=24 * 14, description="How long an event item stays in the table."
    )
    analytics_retention_days: int = Field(
        default=395,
        ge=1,
        le=3650,
        description="Events older than this are not reported (and the bucket's lifecycle rule "
        "deletes them).",
    )

    max_message_chars: int = 4000
    max_upload_bytes: int = 50 * 1024 * 1024
    conversation_ttl_days: int = 30

    # Live-agent hand-off (copilot.handoff.service)
    hub_outbox_queue_url: str | None = Field(
        default=None, description="SQS queue (FIFO) of calls to hubs."
    )
    handoff_public_url: str | None = Field(
        default=None,
        description="Public base URL of the hand-off function; hubs POST agent events to "
        "<url>/hooks/<hub>/<copilot_id>, sent to them as reply_to.",
    )
    hub_secret_ssm_prefix: str | None = Field(
        default=None,
        description="SSM path of hub secrets (<prefix>/<secret_ref>); COPILOT_HUB_SECRET_<REF> "
        "in the environment wins.",
    )
    hub_timeout_seconds: float = 10
    hub_max_attempts: int = Field(
        default=5, ge=1, description="Deliveries of a hand-off start before the customer is told."
    )
    hub_backoff_base_seconds: int = Field(default=2, ge=0)
    hub_backoff_max_seconds: int = Field(default=60, ge=0, le=43200)
    handoff_reorder_window_seconds: float = Field(
        default=10, ge=0, description="How long agent events wait for a missing earlier one."
    )
    handoff_max_sequence_ahead: int = Field(
        default=200,
        ge=101,
        le=10_000,
        description="A hub event whose sequence number is further past the last one applied "
        "is refused (400); above the 100 events held for a gap.",
    )
    webhook_tolerance_seconds: int = Field(
        default=300, ge=1, description="Webhook timestamps further from our clock are refused."
    )
    hub_pull_queue_url: str | None = Field(
        default=None,
        description="SQS queue of the pull jobs that read hubs without webhooks (Salesforce, "
        "Dynamics 365): consumed by the hand-off function.",
    )
    hub_pull_window_seconds: float = Field(
        default=20.0, gt=0, le=600, description="How long one pull job reads a hub."
    )
    sns_cert_hosts: str = Field(
        default="",
        description="Comma-separated extra hosts (host or host:port) SNS signing certificates "
        "may come from, beyond AWS's own sns.<region>.amazonaws.com (the local stack adds its "
        "Connect emulator). Amazon Connect's agent events arrive as SNS notifications.",
    )

    # Rate limits of the chat API (copilot.conversation.limits; sizes: a copilot's ``limits``)
    rate_limits_enabled: bool = Field(
        default=True,
        description="Off: no request is rate-limited and hand-offs have no minimum interval "
        "(the local stack's default; never in production).",
    )
    forwarded_hops: int = Field(
        default=0,
        ge=0,
        le=5,
        description="Proxies of this deployment that append to X-Forwarded-For in front of the "
        "function (0: the header is ignored and API Gateway's source IP is the client).",
    )
