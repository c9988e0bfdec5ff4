from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from copilot.adapters.providers.factory import ProviderSettings


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
    webhook_tolerance_seconds: int = Field(
        default=300, ge=1, description="Webhook timestamps further from our clock are refused."
    )
