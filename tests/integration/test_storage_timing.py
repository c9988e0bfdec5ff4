"""The storage clients add their calls' time to the request scope (moto server, real HTTP)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from copilot import observability as obs
from copilot.adapters.aws.session import aws_client
from copilot.config import Settings

pytestmark = pytest.mark.integration


def metrics_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.splitlines() if x.startswith('{"_aws"')]


def test_dynamodb_s3_and_sqs_calls_are_timed_as_storage(
    moto_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(aws_endpoint_url=moto_url)
    dynamodb = aws_client(settings, "dynamodb")
    s3 = aws_client(settings, "s3")
    sqs = aws_client(settings, "sqs")
    dynamodb.list_tables()  # outside any scope: not counted anywhere
    capsys.readouterr()

    with obs.request_scope(function="chat", request_id="r-1"):
        dynamodb.list_tables()
        s3.list_buckets()
        sqs.list_queues()
        with pytest.raises(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.describe_table(TableName="no-such-table")  # errors take time too

    (line,) = metrics_lines(capsys.readouterr().out)
    assert line["storage_calls"] == 4
    assert line["storage"] > 0
    assert line["request_id"] == "r-1"


def test_other_services_are_not_storage(moto_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    ssm = aws_client(Settings(aws_endpoint_url=moto_url), "ssm")
    with obs.request_scope(function="chat"):
        ssm.describe_parameters()
    assert metrics_lines(capsys.readouterr().out) == []
