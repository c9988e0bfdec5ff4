"""Pydantic models of schema: requests, responses and stored records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

MAX_MESSAGE_CHARS = 4000


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Strict(BaseModel):
    """Request bodies reject unknown fields so typos surface as 400s, not silent no-ops."""

    model_config = ConfigDict(extra="forbid")


Role = Literal["customer", "copilot", "agent", "system"]


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
