"""An index outage on a stack of its own: uploads are retried, then dead-lettered and recorded
as failed, never lost silently and never looping forever."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from copilot_dev.client import CopilotClient
from copilot_dev.demo import upload_files
from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_upload_during_an_index_outage_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path / "stack")
    config.visibility_timeout = 1
    with LocalStack(config) as stack:
        client = CopilotClient(config.function_url("chat"), admin_key=config.admin_api_key)
        copilot = client.create_copilot({"name": "Outage bot"})
        stack.kill("chroma")
        doc = tmp_path / "faq.md"
        doc.write_text("# FAQ\n\nWe open at nine.")
        upload_files(stack.client("s3"), config.bucket, copilot.copilot_id, [doc], tmp_path)

        # The stack's dead-letter consumer (the ingestDeadLetters function on AWS) takes it.
        deadline = time.time() + 90
        while not stack.dead_letters and time.time() < deadline:
            time.sleep(0.2)
        dead = stack.dead_letters
        assert dead, "the event never reached the dead-letter queue"
        record = json.loads(dead[0]["Body"])["Records"][0]
        assert unquote_plus(record["s3"]["object"]["key"]) == f"{copilot.copilot_id}/faq.md"
        assert (
            int(
                dead[0]
                .get("Attributes", {})
                .get("ApproximateReceiveCount", config.max_receive_count)
            )
            >= 1
        )
        # The document is not reported as indexed while its knowledge is missing: it is
        # failed, with the cause (its retry is tests/e2e/test_ingest_failures.py).
        docs = {d.doc_key: d for d in client.documents(copilot.copilot_id)}
        assert docs["faq.md"].status == "failed"
        assert "the knowledge index is unavailable" in (docs["faq.md"].reason or "")
