"""Pydantic models of ingest: requests, responses and stored records."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from copilot.schema import utcnow

# S3 user metadata on crawled pages and synced articles: where the knowledge came from, so
# citations link to it. Written by the sources, read by ingest.
SOURCE_URL_META = "source-url"


class DocumentStatusValue(StrEnum):
    PENDING = "pending"
    INDEXED = "indexed"
    FAILED = "failed"


class DocumentStatus(BaseModel):
    copilot_id: str
    doc_key: str = Field(description="Path of the file under the copilot's prefix.")
    status: DocumentStatusValue
    reason: str | None = None
    chunk_count: int = Field(0, description="Chunks of the version answers come from.")
    version: str | None = Field(
        None, description="The object version (ETag or version id) answers come from, if any."
    )
    source_modified: datetime | None = Field(None, description="When that version was uploaded.")
    pending_version: str | None = Field(None, description="A version being indexed now.")
    attempted_version: str | None = Field(
        None, description="The version the last finished attempt (indexed or failed) was about."
    )
    size: int | None = None
    url: str | None = Field(None, description="Source web page, for crawled or synced knowledge.")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    rev: int = Field(0, description="Revision of this record (optimistic concurrency).")


class ReindexResult(BaseModel):
    copilot_id: str
    queued: int = Field(description="Files queued for indexing.")


class DocumentList(BaseModel):
    documents: list[DocumentStatus]


# S3 keys are at most 1024 bytes; a retry names at most this many documents at once.
MAX_RETRY_KEYS = 1000


class RetryRequest(BaseModel):
    keys: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list,
        max_length=MAX_RETRY_KEYS,
        description=(
            "Documents to queue again (paths under the copilot's prefix). None: every failed "
            "document, and every file of the copilot's prefix that has no record yet."
        ),
    )


class RetrySkip(BaseModel):
    doc_key: str
    reason: str


class RetryResult(BaseModel):
    copilot_id: str
    queued: list[str] = Field(description="Documents queued for another indexing attempt.")
    skipped: list[RetrySkip] = Field(
        default_factory=list, description="Named documents that were not queued, and why."
    )
