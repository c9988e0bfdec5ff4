"""Structured logs with correlation fields, and per-request metrics as CloudWatch EMF lines.

Every log record becomes one JSON object on stdout, carrying the correlation fields of the
request or event being handled (``request_scope``). A scope also sums the time spent in the
parts of its work (``timed``) and any counters (``add_metric``); when it ends it writes one
CloudWatch Embedded Metric Format line, which CloudWatch turns into metrics without a
PutMetricData call (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html). See docs/observability.md.

stdlib ``logging`` and a small formatter rather than aws-lambda-powertools' Logger/Metrics
(3.37), measured on this machine (median of 9 fresh interpreters, bytecode cached):

- powertools ``from aws_lambda_powertools import Logger, Metrics``: 90-130 ms alone, ~8.5 ms
  (6-18 ms) on top of what the chat function loads anyway (botocore, pydantic, werkzeug);
- this module: ~1 ms on top of that (~3 ms when compiled from source): logging, json, re and
  contextvars are loaded by then; out of a ~0.8 s chat cold start.

Nothing heavy is imported here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

NAMESPACE = "Copilot"
DIMENSIONS = ("function",)  # low cardinality; ids go in as properties, never as dimensions
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Wire-level loggers: at DEBUG they print request headers and response bodies (an SSM
# SecureString, a bearer token), so they never go below INFO whatever the level asked for.
WIRE_LOGGERS = ("botocore", "boto3", "urllib3", "httpx", "httpcore", "openai", "requests_oauthlib")

# A credential that made it into a message anyway (an exception's text, a URL): defence in depth.
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
# Attributes every LogRecord has; anything else on a record came from ``extra=`` (or a
# runtime's filter, such as Lambda's aws_request_id) and is written as a field.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class _Scope:
    # A plain class: @dataclass would cost ~1 ms of every cold start for four attributes.
    __slots__ = ("fields", "lock", "metrics", "timings")

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.timings: dict[str, float] = {}  # ms, summed per part
        self.metrics: dict[str, tuple[float, str]] = {}
        # Work a scope hands to other threads (contextvars.copy_context) writes here too.
        self.lock = threading.Lock()


_current: ContextVar[_Scope | None] = ContextVar("copilot_request_scope", default=None)
_configured = threading.Lock()
_emit_lock = threading.Lock()


def _clean(fields: Mapping[str, str | None]) -> dict[str, str]:
    return {k: str(v) for k, v in fields.items() if v is not None and v != ""}


def redact(text: str) -> str:
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)} [redacted]", text)


# --- logs --------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message, the correlation fields of
    the current scope, ``extra=`` fields, and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        scope = _current.get()
        if scope is not None:
            entry.update(scope.fields)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stdout is at the time (test runners swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(level: str | None = None) -> None:
    """JSON lines on stdout at ``level`` (else COPILOT_LOG_LEVEL, else INFO). Idempotent.

    On AWS Lambda the runtime has already put a handler on the root logger (it frames records
    for the log stream and adds aws_request_id): it keeps its handler and gets our formatter.
    Elsewhere (functions-framework, the CLI) one stdout handler of ours is added.
    """
    # The environment, not Settings(): this runs at import, before the container exists.
    # Settings.log_level declares the same variable.
    name = (level or os.environ.get("COPILOT_LOG_LEVEL") or "INFO").upper()
    numeric = getattr(logging, name) if name in LEVELS else logging.INFO
    root = logging.getLogger()
    with _configured:
        formatter = JsonFormatter()
        ours = [h for h in root.handlers if isinstance(h, _StdoutHandler)]
        if "AWS_LAMBDA_FUNCTION_NAME" in os.environ and root.handlers:
            for handler in root.handlers:
                handler.setFormatter(formatter)
        elif not ours:
            handler = _StdoutHandler()
            handler.setFormatter(formatter)
            root.addHandler(handler)
        root.setLevel(numeric)
        for wire in WIRE_LOGGERS:
            logging.getLogger(wire).setLevel(max(numeric, logging.INFO))
    if name not in LEVELS:
        logging.getLogger(__name__).warning("unknown log level %r; using INFO", name)


# --- scopes ------------------------------------------------------------------------------


@contextmanager
def request_scope(**fields: str | None) -> Iterator[None]:
    """One request or event: its correlation fields (request_id, function, copilot_id,
    conversation_id, route, ...) go on every log line written inside it, and its timings and
    metrics go out as one EMF line when it ends.

    A nested scope starts with its parent's fields and keeps its own figures (its own line).
    Each thread starts outside any scope (a new thread has a fresh context).
    """
    parent = _current.get()
    scope = _Scope({**(parent.fields if parent else {}), **_clean(fields)})
    token = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(token)
        _emit(scope)


def bind(**fields: str | None) -> None:
    """Add correlation fields to the current scope (none: ignored)."""
    scope = _current.get()
    if scope is not None:
        with scope.lock:
            scope.fields.update(_clean(fields))


def current_fields() -> dict[str, str]:
    scope = _current.get()
    return dict(scope.fields) if scope is not None else {}


@contextmanager
def timed(part: str) -> Iterator[None]:
    """Add the elapsed time of the block to the scope's timing ``part`` (summed: a part timed
    twice in one request counts both)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        add_timing(part, (time.perf_counter() - started) * 1000)


def add_timing(part: str, ms: float) -> None:
    """For time measured elsewhere (the botocore hook measures between two events)."""
    scope = _current.get()
    if scope is not None:
        with scope.lock:
            scope.timings[part] = scope.timings.get(part, 0.0) + ms


def add_metric(name: str, value: float, unit: str = "Count") -> None:
    """Add ``value`` to the scope's metric ``name`` (an EMF unit: Count, Bytes, Milliseconds...)."""
    scope = _current.get()
    if scope is not None:
        with scope.lock:
            previous = scope.metrics.get(name, (0.0, unit))[0]
            scope.metrics[name] = (previous + value, unit)


# --- metrics -----------------------------------------------------------------------------


def emf_record(
    scope_fields: Mapping[str, str], values: Mapping[str, tuple[float, str]]
) -> dict[str, Any]:
    """An EMF object: the metrics' values and the correlation fields as top-level members; only
    the DIMENSIONS present are dimensions."""
    dimensions = [d for d in DIMENSIONS if d in scope_fields]
    record: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [dimensions],
                    "Metrics": [{"Name": n, "Unit": unit} for n, (_, unit) in values.items()],
                }
            ],
        },
        **scope_fields,
    }
    for name, (value, _) in values.items():
        record[name] = int(value) if float(value).is_integer() else round(value, 2)
    return record


def _emit(scope: _Scope) -> None:
    with scope.lock:
        values = {name: (ms, "Milliseconds") for name, ms in scope.timings.items()}
        values.update(scope.metrics)
        fields = dict(scope.fields)
    if not values:
        return
    line = json.dumps(emf_record(fields, values), default=str) + "\n"
    with _emit_lock:
        sys.stdout.write(line)
        sys.stdout.flush()
