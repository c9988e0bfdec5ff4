"""What every capability's models share: the strict request base, ids and times, the API's
error body, and one way to turn a JSON payload into a model (or a 400 that names the field)."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from copilot.errors import BadRequestError

M = TypeVar("M", bound=BaseModel)

MAX_MESSAGE_CHARS = 4000
# An http(s) URL with a host: validators check it, schemas state it (JSON Schema's "pattern").
HTTP_URL_PATTERN = r"^https?://[^/\s]+"
# Bounds on a JSON body, checked before validation: Python's decoder recurses per nesting level
# (a body nested 50,000 deep raised RecursionError) and refuses integers of over 4,300 digits
# with a ValueError; past these bounds a body is a 400, never a 500. The deepest request model
# (a copilot's topics or business hours) nests 4 levels; no field takes a number of 30 digits.
MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 40


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


def load_json(raw: bytes, *, what: str = "the request body") -> object:
    """``raw`` decoded as standard JSON within MAX_JSON_DEPTH and MAX_NUMBER_CHARS, else a
    BadRequestError that says which rule it broke."""
    outside_strings = _outside_strings(raw)
    if _nesting_exceeds(outside_strings, MAX_JSON_DEPTH):
        raise BadRequestError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    if _LONG_NUMBER.search(outside_strings):
        raise BadRequestError(f"{what} has a number over {MAX_NUMBER_CHARS} characters")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise BadRequestError(f"{what} has a number out of range ({text[:20]})")
        return value

    def constant(name: str) -> object:
        raise BadRequestError(f"{what} is not valid JSON ({name} is not a JSON number)")

    try:
        return json.loads(raw, parse_float=finite, parse_constant=constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequestError(f"{what} is not valid JSON ({e})") from None
    except RecursionError:  # a deep stack at the call site; the pre-scan bounds the body
        raise BadRequestError(f"{what} nests too deeply") from None


# A JSON string, escapes included: brackets and digits inside one neither nest nor count.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_LONG_NUMBER = re.compile(rb"[-+.eE0-9]{%d}" % (MAX_NUMBER_CHARS + 1))
_OPEN_RUN = re.compile(rb"[\[{]{%d}" % (MAX_JSON_DEPTH + 1))
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _outside_strings(raw: bytes) -> bytes:
    # Only a body that could break a bound pays for the scan (bytes.count and a regex search
    # run in C): most have a few brackets and no long run of digits.
    maybe_deep = raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
    return _JSON_STRING.sub(b'""', raw) if maybe_deep or _LONG_NUMBER.search(raw) else b""


def _nesting_exceeds(text: bytes, limit: int) -> bool:
    """Whether ``text``'s arrays and objects nest deeper than ``limit``, found without recursion:
    each pass drops the innermost bracket pairs, one level of every branch."""
    brackets = text.translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    if _OPEN_RUN.search(brackets):
        return True
    for _ in range(limit):
        brackets, removed = _INNERMOST_PAIR.subn(b"", brackets)
        if not removed:
            return False  # nested within the limit, or unbalanced: json.loads says which
    return _INNERMOST_PAIR.search(brackets) is not None


def _field_path(data: Any, loc: Sequence[int | str]) -> list[int | str]:
    """``loc`` as the client wrote it: without the tags pydantic adds for a discriminated
    union (``hub.generic.url`` is the client's ``hub.url``)."""
    path: list[int | str] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("type") == part:
            continue  # the union's tag, not a field
        path.append(part)
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            data = None
    return path


def parse_object(raw: bytes, model: type[M], *, what: str = "the request body") -> M:
    """A JSON object validated as ``model``; BadRequestError naming the first bad field."""
    data = load_json(raw, what=what)
    if not isinstance(data, dict):
        raise BadRequestError(f"{what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = list(first["loc"])
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("type")  # the tag itself is what is wrong (e.g. hub.type)
        where = ".".join(str(p) for p in _field_path(data, loc)) or None
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise BadRequestError(f"{where}: {message}" if where else message, field=where) from None
