"""AWS client construction, shared by the AWS adapters."""

from __future__ import annotations

import threading
from typing import Any

from copilot.config import Settings

_lock = threading.Lock()


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
    )
    session = session or new_session()
    with _lock:  # a botocore session is not safe to create clients from concurrently
        return session.create_client(
            service,
            region_name=settings.region,
            endpoint_url=settings.aws_endpoint_url,
            config=config,
        )
