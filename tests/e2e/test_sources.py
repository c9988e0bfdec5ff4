"""Website and knowledge-base sources end to end: the scheduled refresh (a CloudEvent to the
ingest function) crawls a loopback site and syncs a ServiceNow emulator into the bucket, the
upload pipeline indexes them, and answers cite the page or article URL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from copilot_dev.client import CopilotClient
from copilot_dev.emulators.servicenow_kb import ServiceNowKbEmulator
from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

PAGES = {
    "index.html": "<html><head><title>Acme Help</title></head><body><nav>Home | Shop</nav>"
    "<main><h1>Acme Help</h1><p>See <a href='/delivery.html'>delivery</a>.</p></main></body></html>",
    "delivery.html": "<html><head><title>Delivery</title></head><body><nav>Home | Shop</nav>"
    "<main><h1>Delivery</h1><h2>Drone delivery</h2><p>Drone delivery reaches your garden within "
    "45 minutes for orders under 2 kg.</p></main><footer>© Acme</footer></body></html>",
}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "site"
    root.mkdir()
    for name, html in PAGES.items():
        (root / name).write_text(html)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_scheduled_refresh_indexes_a_website_and_a_knowledge_base(
    site: str, tmp_path: Path
) -> None:
    with ServiceNowKbEmulator() as hub:
        hub.add_article(
            "Warranty claims", "<p>Warranty claims are answered within 3 business days.</p>"
        )
        config = StackConfig.with_free_ports(REPO_ROOT, tmp_path / "stack")
        config.extra_env = {
            "COPILOT_SERVICENOW_INSTANCE_URL": hub.url,
            "COPILOT_SERVICENOW_USERNAME": hub.username,
            "COPILOT_SERVICENOW_PASSWORD": hub.password,
        }
        with LocalStack(config):
            client = CopilotClient(config.function_url("chat"), admin_key=config.admin_api_key)
            copilot = client.create_copilot(
                {
                    "name": "Acme",
                    "websites": [{"start_urls": [site]}],
                    "knowledge_bases": ["servicenow"],
                }
            )
            refresh = requests.post(
                config.function_url("ingest"),
                json={"copilot_id": copilot.copilot_id},
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": str(uuid.uuid4()),
                    "ce-source": "scheduler",
                    "ce-type": "com.copilot.sources.refresh",
                },
                timeout=60,
            )
            assert refresh.ok, refresh.text
            deadline = time.time() + 60
            docs: dict[str, str] = {}
            while time.time() < deadline:
                docs = {d.doc_key: d.status for d in client.documents(copilot.copilot_id)}
                if len(docs) == 3 and all(s != "pending" for s in docs.values()):
                    break
                time.sleep(0.2)
            assert sorted(docs.values()) == ["indexed"] * 3, docs
            assert any(k.startswith("web/") for k in docs) and any(
                k.startswith("kb/servicenow/") for k in docs
            )

            s = client.start(copilot.copilot_id)
            reply = client.send(s.conversation_id, s.token, "How fast is drone delivery?").messages[
                -1
            ]
            assert "45 minutes" in reply.text
            assert reply.citations[0].url == site + "delivery.html"
            assert "Drone delivery" in (reply.citations[0].section or "")
            assert "Home | Shop" not in reply.text  # navigation boilerplate was not indexed

            reply = client.send(
                s.conversation_id, s.token, "How long do warranty claims take?"
            ).messages[-1]
            assert "3 business days" in reply.text
            assert (reply.citations[0].url or "").startswith(
                hub.url + "/kb_view.do?sysparm_article=KB"
            )
