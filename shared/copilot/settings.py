from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from copilot.providers import ProviderSettings


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
