from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from copilot.config import Settings
from copilot_dev.localstack import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS = Path(__file__).parent / "events"
BIN = Path(sys.executable).parent


def load_event(name: str, **substitutions: str) -> dict[str, Any]:
    """An event fixture from tests/events, with ${name} placeholders filled in."""
    text = (EVENTS / f"{name}.json").read_text()
    for key, value in substitutions.items():
        text = text.replace("${" + key + "}", value)
    return json.loads(text)


def provisioned_settings(moto_url: str, chroma_url: str, **values: Any) -> Settings:
    """Settings for a fresh set of tables and a bucket on the moto server (unique names)."""
    import uuid

    import boto3

    from copilot.adapters.aws.dynamo import create_tables

    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        aws_endpoint_url=moto_url,
        chroma_url=chroma_url,
        bucket=f"kb-{suffix}",
        copilots_table=f"copilots-{suffix}",
        conversations_table=f"conversations-{suffix}",
        documents_table=f"documents-{suffix}",
        analytics_table=f"analytics-{suffix}",
        analytics_bucket=f"analytics-{suffix}",
        **values,
    )
    kw = {"endpoint_url": moto_url, "region_name": "us-east-1"}
    create_tables(
        boto3.client("dynamodb", **kw),
        copilots=settings.copilots_table,
        conversations=settings.conversations_table,
        documents=settings.documents_table,
        analytics_events=settings.analytics_table,
    )
    boto3.client("s3", **kw).create_bucket(Bucket=settings.bucket)
    boto3.client("s3", **kw).create_bucket(Bucket=settings.analytics_bucket)
    return settings


def chat_test_client(settings: Settings | None = None, **overrides: Any) -> Any:
    """The chat function under functions-framework's test client, on in-memory stores (each
    replaceable through ``overrides``); the admin key is ``admin-secret``. The caller resets
    the container (``set_container(None)``) when done."""
    from functions_framework import create_app

    from copilot.bootstrap import set_container
    from copilot_dev.fakes import in_memory_container

    set_container(
        in_memory_container(settings or Settings(admin_api_key="admin-secret"), **overrides)
    )
    return create_app("chat", str(REPO_ROOT / "functions" / "chat" / "main.py")).test_client()


@contextmanager
def desk_stack(
    tmp_path_factory: pytest.TempPathFactory, name: str, secret: str, **config: Any
) -> Iterator[Any]:
    """A local stack on free ports whose hub secret ``DESK`` is ``secret`` (copilots hand off
    to an AgentDesk holding it), with StackConfig fields set from ``config``."""
    from copilot_dev.localstack import LocalStack, StackConfig

    settings = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp(name))
    settings.extra_env = {"COPILOT_HUB_SECRET_DESK": secret}
    for field, value in config.items():
        setattr(settings, field, value)
    with LocalStack(settings) as running:
        yield running


@pytest.fixture(scope="module")
def desk(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The agent desk (the generic hub emulator, a person at it) of a module whose stack hands
    off to it: it holds the module's ``SECRET`` (what desk_stack gives the functions)."""
    from copilot_dev.emulators.agent_desk import AgentDesk

    with AgentDesk(request.module.SECRET) as running:
        yield running


T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 15, what: str = "it") -> T:
    """``check()``'s first truthy value, polled every 50 ms; TimeoutError after ``timeout``."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(url)


@contextmanager
def _serve(cmd: list[str], health: str, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait(health, proc)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto in server mode: boto3 talks real HTTP to it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with _serve(
        [sys.executable, "-m", "copilot_dev.localaws", "--port", str(port)], url + "/moto-api/", log
    ):
        yield url


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path_factory.mktemp("chroma")
    cmd = [
        str(BIN / "chroma"),
        "run",
        "--path",
        str(data / "db"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with _serve(cmd, url + "/api/v2/heartbeat", data / "chroma.log"):
        yield url


# Never reach real AWS from a test, whatever the developer's shell has: dummy credentials, and
# no COPILOT_* settings leaking in (tests pass Settings values explicitly).
for _key in [k for k in os.environ if k.startswith(("COPILOT_", "AWS_"))]:
    del os.environ[_key]
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
