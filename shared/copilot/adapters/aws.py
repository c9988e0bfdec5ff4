"""boto3 client construction, shared by the AWS adapters."""

from __future__ import annotations

from typing import Any

from copilot.settings import Settings


def aws_client(settings: Settings, service: str) -> Any:
    import boto3  # lazily: boto3 costs ~0.2 s to import and not every path needs it
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=3,
        read_timeout=10,
        tcp_keepalive=True,
    )
    return boto3.session.Session().client(
        service,
        region_name=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        config=config,
    )
