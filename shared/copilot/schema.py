"""What every capability's models share: the strict request base, ids and times, the API's
error body, and one way to turn a JSON payload into a model (or a 400 that names the field)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from copilot.errors import BadRequestError

M = TypeVar("M", bound=BaseModel)

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


def parse_object(raw: bytes, model: type[M], *, what: str = "the request body") -> M:
    """A JSON object validated as ``model``; BadRequestError naming the first bad field."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequestError(f"{what} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"{what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise BadRequestError(f"{where}: {message}" if where else message, field=where) from None
