"""Fixtures the integration tests share: a deployment provisioned on the moto server and the
Chroma server (tests/conftest.py starts both), and a fresh copilot in it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from copilot.admin.models import CopilotSpec
from copilot.bootstrap import Container
from copilot.config import Settings
from tests.conftest import provisioned_settings


@pytest.fixture(scope="module")
def settings(moto_url: str, chroma_url: str) -> Settings:
    return provisioned_settings(moto_url, chroma_url)


@pytest.fixture
def env(settings: Settings, request: pytest.FixtureRequest) -> Iterator[tuple[Container, str, Any]]:
    """The deployment's container, a new copilot (named after the test module) and an S3
    client of the moto server."""
    container = Container(settings)
    name = request.module.__name__.rsplit(".", 1)[-1]
    copilot = container.admin.create(CopilotSpec(name=name))
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
    yield container, copilot.copilot_id, s3
