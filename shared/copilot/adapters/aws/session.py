"""AWS client construction, shared by the AWS adapters."""

from __future__ import annotations

import threading
import time
from typing import Any

from copilot.config import Settings
from copilot.observability import add_metric, add_timing

_lock = threading.Lock()
# Their time is the request's "storage" part (docs/observability.md); SSM and Bedrock are not.
STORAGE_SERVICES = frozenset({"dynamodb", "s3", "sqs"})
_STARTED = "copilot_started"


def new_session() -> Any:
    """One botocore session per process (the composition root keeps it): its clients share
    the parsed service models and credentials."""
    import botocore.session

    return botocore.session.get_session()


def aws_client(settings: Settings, service: str, session: Any = None) -> Any:
    # botocore directly, not boto3: boto3's S3 customizations import s3transfer (~0.14 s of a
    # cold start) and the adapters use none of boto3's extras. Lazily: botocore is not free.
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=3,
        read_timeout=10,
        tcp_keepalive=True,
        # Kept-alive connections for the threads of one process: an ingest batch reads its
        # files on 8 threads, two batches can run at once in a local ingest process.
        max_pool_connections=32,
    )
    session = session or new_session()
    with _lock:  # a botocore session is not safe to create clients from concurrently
        client = session.create_client(
            service,
            region_name=settings.region,
            endpoint_url=settings.aws_endpoint_url,
            config=config,
        )
    if service in STORAGE_SERVICES:
        time_calls(client, "storage")
    return client


def time_calls(client: Any, part: str) -> None:
    """Add each API call's time, retries and back-off included, to the current request
    scope's timing ``part``, and count the calls (``<part>_calls``)."""

    def started(context: dict[str, Any], **_: Any) -> None:
        context[_STARTED] = time.perf_counter()

    def ended(context: dict[str, Any], **_: Any) -> None:
        begun = context.pop(_STARTED, None)
        if begun is not None:
            add_timing(part, (time.perf_counter() - begun) * 1000)
            add_metric(f"{part}_calls", 1)

    events = client.meta.events
    events.register("before-call", started)
    events.register("after-call", ended)
    events.register("after-call-error", ended)
