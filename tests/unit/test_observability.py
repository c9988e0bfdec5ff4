"""Structured logs, request scopes and EMF metrics (copilot.observability), and the router's
request ids and access lines."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from werkzeug.test import Client

from copilot import observability as obs
from copilot.entrypoints.http.lambda_adapter import lambda_handler_for
from copilot.entrypoints.http.router import Api, Call, Route
from copilot.errors import NotFoundError
from tests.conftest import load_event


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Records of the 'obs-test' logger, formatted by JsonFormatter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(obs.JsonFormatter())
    logger = logging.getLogger("obs-test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, put back as it was (configure_logging changes it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    wire = {name: logging.getLogger(name).level for name in obs.WIRE_LOGGERS}
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, wire_level in wire.items():
            logging.getLogger(name).setLevel(wire_level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def emf_lines(out: str) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [p for p in parsed if "_aws" in p]


# --- the formatter ------------------------------------------------------------------------


def test_a_record_is_one_json_line_with_the_scope_fields(logs: io.StringIO) -> None:
    log = logging.getLogger("obs-test")
    with obs.request_scope(request_id="r-1", function="chat", copilot_id=None):
        obs.bind(conversation_id="c-1")
        log.info("turn of %s", "c-1", extra={"status": 200})
    log.warning("after")

    inside, outside = lines(logs)
    assert inside["level"] == "INFO" and inside["logger"] == "obs-test"
    assert inside["message"] == "turn of c-1"
    assert inside["request_id"] == "r-1" and inside["function"] == "chat"
    assert inside["conversation_id"] == "c-1" and inside["status"] == 200
    assert "copilot_id" not in inside  # None is left out
    assert inside["timestamp"].endswith("Z") and "T" in inside["timestamp"]
    assert "request_id" not in outside and outside["level"] == "WARNING"


def test_exceptions_are_in_the_line_and_credentials_are_redacted(logs: io.StringIO) -> None:
    log = logging.getLogger("obs-test")
    try:
        raise ValueError("refused Authorization: Bearer abc.def-ghi_123")
    except ValueError:
        log.exception("call failed with Basic dXNlcjpwYXNz")
    (line,) = lines(logs)
    assert line["message"] == "call failed with Basic [redacted]"
    assert "ValueError" in line["exception"] and "Traceback" in line["exception"]
    assert "abc.def-ghi_123" not in json.dumps(line)
    assert "Bearer [redacted]" in line["exception"]


# --- scopes -------------------------------------------------------------------------------


def test_a_nested_scope_inherits_fields_and_keeps_its_own_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with obs.request_scope(function="ingest", request_id="m-1"):
        obs.add_metric("messages", 1)
        with obs.request_scope(copilot_id="cp", document_key="a.pdf"):
            assert obs.current_fields() == {
                "function": "ingest",
                "request_id": "m-1",
                "copilot_id": "cp",
                "document_key": "a.pdf",
            }
            obs.add_timing("document", 12.5)
        assert "copilot_id" not in obs.current_fields()
    inner, outer = emf_lines(capsys.readouterr().out)
    assert inner["document"] == 12.5 and "messages" not in inner
    assert inner["copilot_id"] == "cp" and inner["request_id"] == "m-1"
    assert outer["messages"] == 1 and "document" not in outer and "copilot_id" not in outer


def test_threads_do_not_share_scopes(capsys: pytest.CaptureFixture[str]) -> None:
    barrier = threading.Barrier(2)
    seen: dict[str, dict[str, str]] = {}

    def work(name: str) -> None:
        with obs.request_scope(request_id=name, function="chat"):
            barrier.wait()  # both scopes are open at once
            obs.add_timing("turn", 1.0)
            seen[name] = obs.current_fields()
            barrier.wait()

    with obs.request_scope(request_id="main"):
        threads = [threading.Thread(target=work, args=(n,)) for n in ("t1", "t2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert obs.current_fields() == {"request_id": "main"}
    assert seen["t1"]["request_id"] == "t1" and seen["t2"]["request_id"] == "t2"
    emitted = emf_lines(capsys.readouterr().out)
    assert sorted(e["request_id"] for e in emitted) == ["t1", "t2"]  # main recorded nothing
    assert all(e["turn"] == 1.0 for e in emitted)


def test_outside_a_scope_nothing_is_recorded_or_emitted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    obs.bind(request_id="x")
    obs.add_metric("n", 1)
    with obs.timed("turn"):
        pass
    assert obs.current_fields() == {}
    assert capsys.readouterr().out == ""


def test_a_scope_that_recorded_nothing_writes_no_metrics_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with obs.request_scope(request_id="r", function="chat"):
        pass
    assert capsys.readouterr().out == ""


# --- EMF ----------------------------------------------------------------------------------


def test_the_metrics_line_is_cloudwatch_embedded_metric_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(RuntimeError), obs.request_scope(function="chat", conversation_id="c-9"):
        with obs.timed("retrieval"):
            pass
        with obs.timed("retrieval"):  # summed
            obs.add_timing("storage", 3.0)
        obs.add_metric("storage_calls", 1)
        obs.add_metric("storage_calls", 2)
        raise RuntimeError("the line is written on the way out too")

    (line,) = emf_lines(capsys.readouterr().out)
    directive = line["_aws"]
    assert isinstance(directive["Timestamp"], int)
    (metrics,) = directive["CloudWatchMetrics"]
    assert metrics["Namespace"] == "Copilot"
    assert metrics["Dimensions"] == [["function"]]
    units = {m["Name"]: m["Unit"] for m in metrics["Metrics"]}
    assert units == {
        "retrieval": "Milliseconds",
        "storage": "Milliseconds",
        "storage_calls": "Count",
    }
    # Every metric and dimension is a top-level member; ids are properties, not dimensions.
    assert line["function"] == "chat" and line["conversation_id"] == "c-9"
    assert line["storage"] == 3.0 and line["storage_calls"] == 3
    assert isinstance(line["retrieval"], float) and line["retrieval"] >= 0


def test_without_a_function_the_metrics_have_no_dimension() -> None:
    record = obs.emf_record({"request_id": "r"}, {"turn": (5.0, "Milliseconds")})
    assert record["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]


# --- configure_logging --------------------------------------------------------------------


def test_configure_logging_is_idempotent_and_reads_the_level(
    root_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("COPILOT_LOG_LEVEL", "warning")
    obs.configure_logging()
    obs.configure_logging()
    ours = [h for h in root_logger.handlers if isinstance(h.formatter, obs.JsonFormatter)]
    assert len(ours) == 1
    assert root_logger.level == logging.WARNING
    obs.configure_logging("debug")
    assert root_logger.level == logging.DEBUG
    # Wire-level loggers print headers and bodies at DEBUG: they stay at INFO.
    assert logging.getLogger("botocore").level == logging.INFO
    capsys.readouterr()
    logging.getLogger("obs-config").debug("shown")
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["message"] == "shown" and line["level"] == "DEBUG"


def test_on_lambda_the_runtimes_handler_gets_the_json_formatter(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "copilot-chat")
    buffer = io.StringIO()
    runtime = logging.StreamHandler(buffer)  # stands in for the runtime's LambdaLoggerHandler
    root_logger.handlers[:] = [runtime]
    obs.configure_logging("INFO")
    assert root_logger.handlers == [runtime]
    logging.getLogger("obs-lambda").info("hello")
    assert json.loads(buffer.getvalue())["message"] == "hello"


# --- the router ---------------------------------------------------------------------------


class Echo(BaseModel):
    request_id: str
    conversation_id: str


def echo_api() -> Api:
    def turn(call: Call) -> Echo:
        logging.getLogger("obs-test").info("handling")
        fields = obs.current_fields()
        return Echo(request_id=fields["request_id"], conversation_id=fields["conversation_id"])

    def missing(call: Call) -> None:
        raise NotFoundError("no such thing")

    return Api(
        "test",
        [
            Route("POST", "/conversations/<conversation_id>/messages", turn, "t", timing="turn"),
            Route("GET", "/missing", missing, "m"),
        ],
        function="chat",
    )


def test_requests_carry_a_request_id_and_write_an_access_line(
    logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    access = logging.getLogger("copilot.entrypoints.http.router")
    access.addHandler(logging.getLogger("obs-test").handlers[0])
    access.setLevel(logging.INFO)
    try:
        client = Client(echo_api().wsgi())
        sent = client.post("/conversations/c-1/messages", headers={"X-Request-Id": "abc-123"})
        fresh = client.post("/conversations/c-2/messages")
        hostile = client.post(
            "/conversations/c-3/messages", headers={"X-Request-Id": 'x", "level": "ERROR'}
        )
        missing = client.get("/missing")
    finally:
        access.removeHandler(logging.getLogger("obs-test").handlers[0])

    assert sent.headers["X-Request-Id"] == "abc-123"
    assert sent.get_json() == {"request_id": "abc-123", "conversation_id": "c-1"}
    assert len(fresh.headers["X-Request-Id"]) == 32
    assert fresh.get_json()["request_id"] == fresh.headers["X-Request-Id"]
    assert len(hostile.headers["X-Request-Id"]) == 32  # replaced, not echoed
    assert missing.status_code == 404 and missing.headers["X-Request-Id"]

    records = lines(logs)
    handling = [r for r in records if r["message"] == "handling"]
    assert handling[0]["request_id"] == "abc-123" and handling[0]["conversation_id"] == "c-1"
    assert handling[0]["route"] == "/conversations/<conversation_id>/messages"
    access_lines = [r for r in records if r["logger"] == "copilot.entrypoints.http.router"]
    assert len(access_lines) == 4
    first = access_lines[0]
    assert first["message"].startswith("POST /conversations/<conversation_id>/messages 200 ")
    assert first["method"] == "POST" and first["status"] == 200
    assert first["duration_ms"] >= 0 and first["function"] == "chat"
    assert access_lines[-1]["status"] == 404

    turns = emf_lines(capsys.readouterr().out)
    ids = [r.headers["X-Request-Id"] for r in (sent, fresh, hostile)]
    assert [t["request_id"] for t in turns] == ids  # the message route's turns, not the 404
    assert all("turn" in t and t["function"] == "chat" for t in turns)


def test_on_lambda_the_request_id_is_api_gateways() -> None:
    handler = lambda_handler_for(echo_api())
    event = load_event(
        "http_api_v2",
        method="POST",
        path="/conversations/c-7/messages",
        query="",
        authorization="",
        admin_key="",
    )
    event["requestContext"]["requestId"] = "gw-req-42"
    event["body"] = ""
    response = handler(event, None)
    assert response["statusCode"] == 200
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert headers["x-request-id"] == "gw-req-42"
    assert json.loads(response["body"])["request_id"] == "gw-req-42"
