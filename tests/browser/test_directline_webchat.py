"""Microsoft's own web chat against the Direct Line endpoints: the real ``botframework-webchat``
bundle (4.18, from infra/node/node_modules, served by a local page) in Chromium, polling the
local stack through ``createDirectLine({ token, domain, webSocket: false })``.

One customer's flow, as issue 14 asks: the conversation start message, a question answered with
its citation, a no-match whose hand-off offer is accepted with the suggested-action button, the
desk's agent joining and replying (seen in the page) and reading the customer's answer, the agent
ending and the copilot answering again; and no error in the page's console.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from copilot_dev.demo import upload_files, wait_indexed
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.localstack import LocalStack, free_port
from tests.conftest import REPO_ROOT, desk_stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SECRET = "directline-desk-secret"
WEBCHAT_JS = REPO_ROOT / "infra" / "node" / "node_modules" / "botframework-webchat" / "dist"
DEMO = REPO_ROOT / "infra" / "demo"
QUESTION = "How many days do I have to return an item?"

# The page a site would put up (docs/directline.md has the same snippet): a token from the
# copilot's public endpoint, then Web Chat on Direct Line in polling mode.
PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Direct Line test</title><link rel="icon" href="data:,">
<style>html, body { height: 100%; margin: 0 } #webchat { height: 100% }</style></head>
<body>
<main id="webchat"></main>
<script src="/webchat.js"></script>
<script>
  (async function () {
    const api = __API__, copilotId = __COPILOT__;
    const res = await fetch(`${api}/copilots/${copilotId}/directline/tokens/generate`, {
      method: 'POST'
    });
    const { token, conversationId } = await res.json();
    window.conversationId = conversationId;
    window.WebChat.renderWebChat(
      {
        directLine: window.WebChat.createDirectLine({
          token,
          domain: `${api}/v3/directline`,
          webSocket: false,
          pollingInterval: 500
        }),
        username: 'Ann'
      },
      document.getElementById('webchat')
    );
  })();
</script>
</body>
</html>
"""


class Site:
    """The test page and the Web Chat bundle, from a threaded http.server on a free port."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        handler = partial(_Quiet, directory=str(folder))
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with desk_stack(tmp_path_factory, "directline-stack", SECRET) as running:
        yield running


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    bundle = WEBCHAT_JS / "webchat.js"
    if not bundle.exists():
        pytest.fail(
            f"botframework-webchat is missing ({bundle}): run `npm ci --prefix infra/node` "
            "(bash infra/test.sh does).",
            pytrace=False,
        )
    folder = tmp_path_factory.mktemp("directline-site")
    (folder / "webchat.js").symlink_to(bundle)
    served = Site(folder)
    yield served
    served.close()


@pytest.fixture(scope="module")
def copilot_id(stack: LocalStack, desk: AgentDesk, site: Site) -> str:
    """The demo copilot (returns knowledge only: indexed in seconds) handing off to the desk,
    offering a person after one no-match, and allowing the test page's origin."""
    client = stack.copilot_client()
    spec = json.loads((DEMO / "copilot.json").read_text())
    spec.update(
        allowed_origins=[site.origin],
        no_match_threshold=1,
        hub={"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"},
    )
    copilot = client.create_copilot(spec).copilot_id
    folder = DEMO / "knowledge"
    s3 = stack.client("s3")
    versions = upload_files(
        s3, stack.config.bucket, copilot, [folder / "returns-and-refunds.md"], folder
    )
    [status] = wait_indexed(client, copilot, versions, timeout=120)
    assert status.status == "indexed", status
    return copilot


def send(page: Any, text: str) -> None:
    box = page.get_by_placeholder("Type your message")
    box.fill(text)
    box.press("Enter")


def test_webchat_talks_to_the_copilot_and_the_desk_agent_through_direct_line(
    stack: LocalStack, desk: AgentDesk, site: Site, copilot_id: str, page: Any
) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    api = stack.config.function_url("chat")
    html = PAGE.replace("__API__", json.dumps(api)).replace("__COPILOT__", json.dumps(copilot_id))
    # Served by the site itself: a page Playwright fulfils counts as public to Chromium, and
    # its local-network checks then refuse its calls to the loopback API.
    (site.folder / "index.html").write_text(html)
    page.goto(f"{site.origin}/")
    transcript = page.locator(".webchat__basic-transcript")
    try:
        expect(transcript).to_contain_text("Ask me anything about your order", timeout=15_000)
    except AssertionError as e:
        raise AssertionError(f"{e}\nconsole errors: {errors}") from None
    conv = page.evaluate("window.conversationId")

    # A question: the answer, and its source in Web Chat's citation list (a file: its
    # snippet opens in a dialog).
    send(page, QUESTION)
    expect(transcript).to_contain_text("30 days", timeout=15_000)
    citation = page.locator(".webchat__link-definitions").first
    expect(citation).to_contain_text("Returns and Refunds")
    citation.get_by_role("button").first.click()
    dialog = page.locator(".webchat__citation-modal-dialog")
    expect(dialog).to_contain_text("30 days")
    dialog.locator(".webchat__modal-dialog__close-button").click()
    expect(dialog).to_have_count(0)

    # A no-match: the offer's buttons are suggested actions; Yes hands off to the desk.
    send(page, "Can you teach my parrot to whistle?")
    yes = page.locator("button.webchat__suggested-action", has_text="Yes")
    expect(yes).to_be_visible(timeout=15_000)
    yes.click()
    expect(transcript).to_contain_text("connecting you with a person")
    desk.wait_for_session(conv, timeout=15)
    assert desk.join(conv).ok and desk.typing(conv).ok
    assert desk.say(conv, "Hi Ann, Alex here. What happened?").ok
    expect(transcript).to_contain_text("Alex joined the conversation.", timeout=10_000)
    expect(transcript).to_contain_text("Alex here")
    send(page, "My chain snapped")
    assert desk.wait_for_customer(conv, 1) == ["My chain snapped"]

    # The agent ends; the copilot answers again.
    assert desk.end(conv).ok
    expect(transcript).to_contain_text("Alex ended the chat.")
    send(page, QUESTION)
    expect(page.locator(".webchat__link-definitions")).to_have_count(2, timeout=15_000)

    # Every message the customer sent was echoed (matched by clientActivityID): none is left
    # "Sending" (nor shown twice).
    expect(page.get_by_text("Sending", exact=True)).to_have_count(0)
    expect(transcript.get_by_text("My chain snapped", exact=True)).to_have_count(1)
    assert errors == [], errors
