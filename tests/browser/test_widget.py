"""The web chat widget (GET /widget.js) in Chromium, embedded in the demo site of another origin
than the chat API, against the whole local stack with the agent desk as the copilot's hub: the
start message, cited answers, the no-match message and the hand-off offer's buttons, a hand-off
seen live (agent joins, types, replies, ends; the copilot answers again), the conversation kept
across a reload and a second tab, an expired conversation, inert markup from documents and
agents, axe-core, an origin the copilot does not allow, and the mobile layout.

One stack, one copilot (the demo's knowledge plus a document carrying markup) for the module;
each test has its own browser context (own sessionStorage), so its own conversation.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import requests
from playwright.sync_api import expect

from copilot.admin.models import Copilot
from copilot_dev.client import CopilotClient
from copilot_dev.demo import knowledge_files, upload_files, wait_indexed
from copilot_dev.demo_site import DemoSite
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.localstack import LocalStack
from tests.browser.conftest import axe_violations
from tests.conftest import REPO_ROOT, desk_stack, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SECRET = "widget-desk-secret"
DEMO = REPO_ROOT / "infra" / "demo"
COLOR = "#0e7c3a"  # the copilot's colour: dark enough for white text
T = TypeVar("T")
# A help page whose text holds markup: the answer and its citation must show it as text.
MARKUP_DOC = """# Storm grey paint

The Voyager frame comes in storm grey paint. <script>window.__pwned = "script"</script>
Touch-up pens for storm grey paint: <img src=x onerror="window.__pwned = 'img'"> ask a workshop,
or [click here](javascript:window.__pwned='link') for the storm grey paint code.
"""
PAYLOAD = '<b>bold?</b> <img src=x onerror="window.__pwned=1"> [click](javascript:window.__pwned=2)'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with desk_stack(tmp_path_factory, "widget-stack", SECRET) as running:
        yield running


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> str:
    return stack.config.function_url("chat")


@pytest.fixture(scope="module")
def served_site(api: str) -> Iterator[DemoSite]:
    """The demo site, its page not ready until the copilot is created (it needs the origin)."""
    with DemoSite(api) as running:
        yield running


@pytest.fixture(scope="module")
def site(copilot: Copilot, served_site: DemoSite) -> DemoSite:
    """The demo site with the copilot's widget on its page."""
    return served_site


@pytest.fixture(scope="module")
def copilot(
    stack: LocalStack,
    desk: AgentDesk,
    served_site: DemoSite,
    tmp_path_factory: pytest.TempPathFactory,
) -> Copilot:
    """The demo copilot, handing off to the desk, allowed on the demo site's origins only; its
    knowledge is the demo's help pages and the page with markup."""
    client = stack.copilot_client()
    spec = json.loads((DEMO / "copilot.json").read_text())
    spec["hub"] = {"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"}
    spec["allowed_origins"] = served_site.origins()
    spec["appearance"] = {"color": COLOR, "title": "Northwind help"}
    # The site's group-rides page is a website source: its answers cite the page's URL.
    spec["websites"] = [{"start_urls": [served_site.url + "/rides.html"], "max_depth": 0}]
    created = client.create_copilot(spec)
    served_site.copilot_id = created.copilot_id  # its pages are served (and crawled) from now
    refresh_sources(stack, created.copilot_id)
    extra = tmp_path_factory.mktemp("markup-doc") / "paint-colours.md"
    extra.write_text(MARKUP_DOC)
    folder = DEMO / "knowledge"
    s3 = stack.client("s3")
    versions = upload_files(
        s3, stack.config.bucket, created.copilot_id, knowledge_files(folder), folder
    )
    versions |= upload_files(s3, stack.config.bucket, created.copilot_id, [extra], extra.parent)
    docs = wait_indexed(client, created.copilot_id, versions)
    assert all(d.status == "indexed" for d in docs), docs
    web = wait_for(
        lambda: [
            d
            for d in client.documents(created.copilot_id)
            if d.doc_key.startswith("web/") and d.status != "pending"
        ],
        60,
        "the crawled page",
    )
    assert [d.status for d in web] == ["indexed"], web
    return created


def refresh_sources(stack: LocalStack, copilot_id: str) -> None:
    """What the schedule does on AWS: a refresh CloudEvent to the ingest function (it crawls
    the copilot's websites into the bucket; the upload pipeline indexes the pages)."""
    refreshed = requests.post(
        stack.config.function_url("ingest"),
        json={"copilot_id": copilot_id},
        headers={
            "ce-specversion": "1.0",
            "ce-id": uuid.uuid4().hex,
            "ce-source": "scheduler",
            "ce-type": "com.copilot.sources.refresh",
        },
        timeout=60,
    )
    assert refreshed.ok, refreshed.text


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> CopilotClient:
    return stack.copilot_client()


class Widget:
    """The widget on a page, through its DOM contract (data-copilot attributes)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.launcher = page.locator('[data-copilot="launcher"]')
        self.panel = page.locator('[data-copilot="panel"]')
        self.log = page.locator('[data-copilot="log"]')
        self.input = page.locator('[data-copilot="input"]')
        self.status = page.locator('[data-copilot="status"]')
        self.typing = page.locator('[data-copilot="typing"]')
        self.messages = self.log.locator('[data-copilot="message"]')

    def open(self, url: str) -> Widget:
        self.page.goto(url)
        ready(self.page)
        self.launcher.click()
        expect(self.panel).to_be_visible()
        return self

    def role(self, role: str) -> Any:
        return self.log.locator(f'[data-copilot="message"][data-role="{role}"]')

    def say(self, text: str) -> int:
        """Send ``text`` (typed, then Enter); the index of the customer's message, once shown."""
        expect(self.messages.first).to_be_visible()  # the start message, at least
        before = self.messages.count()
        self.input.fill(text)
        self.input.press("Enter")
        mine = self.messages.nth(before)
        expect(mine.locator('[data-copilot="text"]')).to_have_text(text, timeout=20_000)
        expect(mine).to_have_attribute("data-role", "customer")
        expect(self.input).to_have_value("")
        return before

    def ask(self, text: str) -> Any:
        """Send ``text`` with the Send button; the first reply after the customer's message."""
        expect(self.messages.first).to_be_visible()
        before = self.messages.count()
        self.input.fill(text)
        self.page.locator('[data-copilot="send"]').click()
        mine = self.messages.nth(before)
        expect(mine.locator('[data-copilot="text"]')).to_have_text(text, timeout=20_000)
        expect(mine).to_have_attribute("data-role", "customer")
        reply = self.messages.nth(before + 1)
        expect(reply).to_be_visible(timeout=20_000)
        return reply

    def conversation(self) -> dict[str, Any]:
        stored = self.page.evaluate(
            "() => Object.entries(sessionStorage).find(([k]) => k.startsWith('copilot-widget:'))"
        )
        return json.loads(stored[1])["conv"]


def ready(page: Any) -> None:
    """The widget's script ran and its start-up (config, resume) is done."""
    page.wait_for_function("() => window.CopilotWidget")
    page.evaluate("() => window.CopilotWidget.ready")


def texts(locator: Any) -> list[str]:
    return [t.strip() for t in locator.locator('[data-copilot="text"]').all_inner_texts()]


def test_opening_shows_the_start_message_in_the_copilots_look(
    copilot: Copilot, site: DemoSite, page: Any
) -> None:
    page.goto(site.url)
    ready(page)
    w = Widget(page)
    expect(w.launcher).to_have_attribute("aria-label", "Open chat with Northwind Helper")
    expect(w.launcher).to_have_attribute("aria-expanded", "false")
    expect(w.panel).to_be_hidden()
    w.launcher.click()
    expect(w.launcher).to_have_attribute("aria-expanded", "true")
    expect(w.panel).to_have_attribute("role", "dialog")
    expect(w.panel).to_contain_text("Northwind help")  # the appearance's title
    start = w.role("bot").first
    expect(start).to_have_attribute("data-seq", "1")
    expect(start.locator('[data-copilot="text"]')).to_have_text(copilot.messages.conversation_start)
    expect(w.input).to_be_focused()
    # The copilot's colour, with white text (black would contrast less).
    assert w.launcher.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(14, 124, 58)"
    assert w.launcher.evaluate("b => getComputedStyle(b).color") == "rgb(255, 255, 255)"
    page.keyboard.press("Escape")
    expect(w.panel).to_be_hidden()
    expect(w.launcher).to_be_focused()
    w.launcher.click()
    expect(w.messages).to_have_count(1)  # the same conversation, not a second start


def test_a_question_gets_a_cited_answer_and_the_panel_passes_axe(
    copilot: Copilot, site: DemoSite, page: Any
) -> None:
    page.add_init_script(
        "window.seen = []; addEventListener('copilot:message', e => seen.push(e.detail));"
    )
    w = Widget(page).open(site.url)
    answer = w.ask("How long does a refund take?")
    expect(answer).to_have_attribute("data-role", "bot")
    cites = answer.locator('a[data-copilot="citation"]')
    expect(cites.first).to_be_visible()
    sources = cites.all_inner_texts()
    assert any("returns-and-refunds.md" in s for s in sources), sources
    # A file has no public address: its name is shown, and it is focusable for its snippet.
    first = cites.first
    assert first.get_attribute("href") is None
    first.focus()
    tip = answer.locator(f"#{first.get_attribute('aria-describedby')}")
    expect(tip).to_be_visible()
    assert len(tip.inner_text()) > 20
    markers = answer.locator("button.ref")
    if markers.count():  # [n] in the text: a button that moves to its source
        markers.first.click()
        expect(answer.locator('[data-copilot="citation"]:focus')).to_have_count(1)
    # One copilot:message event a message shown, with the message as the API gave it.
    details = page.evaluate("() => seen.map(m => [m.role, m.seq, m.citations.length > 0])")
    assert details == [["copilot", 1, False], ["customer", 2, False], ["copilot", 3, True]]
    violations = axe_violations(page)
    assert violations == [], violations


def test_thumbs_on_an_answer_reach_the_analytics_tied_to_its_sources(
    client: CopilotClient, copilot: Copilot, site: DemoSite, page: Any
) -> None:
    w = Widget(page).open(site.url)
    start = w.messages.first
    expect(start.locator('[data-copilot="thumbs-up"]')).to_have_count(0)  # not an answer
    answer = w.ask("How long does a refund take?")
    expect(answer).to_have_attribute("data-role", "bot")
    up, down = (
        answer.locator('[data-copilot="thumbs-up"]'),
        answer.locator('[data-copilot="thumbs-down"]'),
    )
    expect(up).to_have_attribute("aria-label", "Helpful")
    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    down.click()  # a change of mind: the last one counts
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    conv = w.conversation()
    seq = int(answer.get_attribute("data-seq") or 0)
    stored = client.messages(conv["id"], conv["token"]).messages
    cited = {c.source for c in next(m for m in stored if m.seq == seq).citations}
    until = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    report = wait_for(
        lambda: (
            (r := client.analytics(copilot.copilot_id, since="1h", until=until)).feedback.down and r
        ),
        timeout=30,
        what="the feedback in the analytics",
    )
    assert (report.feedback.up, report.feedback.down) == (0, 1)
    assert {d.name for d in report.most_downvoted} == cited


def test_a_web_citation_links_to_its_page(site: DemoSite, page: Any) -> None:
    """An answer from a crawled page cites the page's URL: a working link, in a new tab."""
    w = Widget(page).open(site.url)
    answer = w.ask("When does the Saturday social ride leave?")
    expect(answer).to_contain_text("8:30")
    link = answer.locator('a[data-copilot="citation"]').first
    expect(link).to_have_attribute("href", site.url + "/rides.html")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    with page.context.expect_page() as opened:
        link.click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url == site.url + "/rides.html"
    expect(tab.get_by_role("heading", level=1)).to_have_text("Group rides")


def test_no_match_then_the_hand_off_offers_buttons(
    copilot: Copilot, site: DemoSite, page: Any
) -> None:
    w = Widget(page).open(site.url)
    reply = w.ask("Do you sell submarines for the moon?")
    expect(reply.locator('[data-copilot="text"]')).to_have_text(copilot.messages.no_match)
    w.ask("Can my parrot ride a unicycle on Mars?")
    offer = w.role("bot").last
    expect(offer).to_contain_text("connect you with a person")
    buttons = offer.locator('button[data-copilot="quick-reply"]')
    expect(buttons).to_have_text(["Yes", "No"])
    buttons.nth(1).click()
    expect(w.role("customer").last).to_contain_text("No")
    expect(w.role("bot").last).to_contain_text("carry on")
    expect(page.locator('button[data-copilot="quick-reply"]')).to_have_count(0)  # answered


def test_start_over_asks_first_then_clears(copilot: Copilot, site: DemoSite, page: Any) -> None:
    w = Widget(page).open(site.url)
    w.ask("How long does a refund take?")
    page.locator('[data-copilot="start-over"]').click()
    confirm = w.role("bot").last
    expect(confirm).to_contain_text("Are you sure you want to start over?")
    confirm.locator('button[data-copilot="quick-reply"]', has_text="Yes").click()
    expect(w.role("bot").last.locator('[data-copilot="text"]')).to_have_text(
        copilot.messages.start_over
    )
    expect(w.role("bot").nth(-2).locator('[data-copilot="text"]')).to_have_text(
        copilot.messages.reset_conversation
    )


def test_a_lost_answer_is_retried_with_its_key_and_a_429_waits(
    client: CopilotClient, site: DemoSite, page: Any
) -> None:
    """The first post reaches the API but its answer is lost: the widget retries once with the
    same Idempotency-Key (the API replays, nothing is stored twice). The next post gets a 429
    (from the network layer here: the local stack runs without rate limits) and is sent again
    after its Retry-After."""
    keys: list[str] = []
    lost = {"answer": True, "limited": True}

    def flaky(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        keys.append(route.request.headers["idempotency-key"])
        if lost["answer"]:
            lost["answer"] = False
            route.fetch()  # stored and answered...
            route.abort("connectionreset")  # ...but the page never gets the answer
        elif len(keys) == 3 and lost["limited"]:
            lost["limited"] = False
            route.fulfill(
                status=429,
                headers={
                    "Retry-After": "1",
                    "Access-Control-Allow-Origin": site.origin,
                    "Access-Control-Expose-Headers": "Retry-After",  # as the API exposes it
                },
                json={"error": {"code": "rate_limited", "message": "slow down"}},
            )
        else:
            route.continue_()

    w = Widget(page).open(site.url)
    page.route("**/conversations/*/messages", flaky)
    answer = w.ask("How long does a refund take?")
    expect(answer).to_have_attribute("data-role", "bot")
    assert len(keys) == 2 and keys[0] == keys[1], keys
    conv = w.conversation()
    stored = client.messages(conv["id"], conv["token"]).messages
    assert [m.text for m in stored].count("How long does a refund take?") == 1

    w.input.fill("Thanks")
    w.input.press("Enter")
    expect(w.status).to_contain_text("trying again in 1 s")
    expect(w.role("customer").last).to_have_text("You: Thanks", timeout=10_000)
    expect(w.status).to_have_text("")
    assert len(keys) == 4 and keys[2] == keys[3] != keys[0], keys


def test_a_hand_off_is_seen_live_and_the_copilot_answers_again(
    client: CopilotClient, desk: AgentDesk, site: DemoSite, page: Any
) -> None:
    w = Widget(page).open(site.url)
    w.ask("Do you sell submarines for the moon?")
    w.ask("Can my parrot ride a unicycle on Mars?")
    w.role("bot").last.locator('button[data-copilot="quick-reply"]', has_text="Yes").click()
    cancel = page.locator('[data-copilot="cancel-handoff"]')
    expect(cancel).to_have_text("Cancel waiting")
    expect(page.locator('[data-copilot="handoff"]')).to_be_hidden()
    conv = w.conversation()["id"]
    desk.wait_for_session(conv)

    assert desk.join(conv, agent="Alex").ok
    expect(w.role("system").last).to_have_text("Notice: Alex joined the conversation.")
    expect(cancel).to_have_text("Leave agent chat")
    assert desk.typing(conv, agent="Alex").ok
    expect(w.typing).to_be_visible()
    expect(w.typing).to_have_text("Alex is typing…")
    assert desk.say(conv, "Hi, **Alex** here. Which order is it?", agent="Alex").ok
    said = w.role("agent").last
    expect(said.locator('[data-copilot="text"] strong')).to_have_text("Alex")
    expect(said).to_contain_text("Alex")
    expect(w.typing).to_be_hidden()
    w.say("Order NW-1234, thanks")
    assert desk.wait_for_customer(conv, 1)[-1] == "Order NW-1234, thanks"

    assert desk.end(conv, agent="Alex").ok
    expect(w.role("system").last).to_contain_text("Alex ended the chat.")
    expect(page.locator('[data-copilot="handoff"]')).to_be_visible()
    expect(cancel).to_be_hidden()
    answer = w.ask("How long does a refund take?")
    expect(answer).to_have_attribute("data-role", "bot")
    expect(answer.locator('a[data-copilot="citation"]').first).to_be_visible()
    assert client.messages(conv, w.conversation()["token"]).state == "bot"


def test_a_turn_answered_after_the_agent_ended_does_not_bring_the_agent_back(
    desk: AgentDesk, site: DemoSite, page: Any
) -> None:
    """The customer's message is answered (state 'agent') but the answer reaches the page only
    after the agent ended the chat and the long-poll brought that (state 'bot'): the stale
    answer's state must not hide 'Talk to a person' and restart the long-poll."""
    w = Widget(page).open(site.url)
    w.ask("How long does a refund take?")
    page.locator('[data-copilot="handoff"]').click()
    conv = w.conversation()["id"]
    desk.wait_for_session(conv)
    assert desk.join(conv, agent="Alex").ok
    expect(w.role("system").last).to_contain_text("Alex joined")

    def late_answer(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        answered = route.fetch()  # stored, in the agent's chat
        assert answered.json()["state"] == "agent"
        assert desk.end(conv, agent="Alex").ok
        time.sleep(1.5)  # the page's long-poll (already out) brings the end meanwhile
        route.fulfill(response=answered)

    page.route(f"**/conversations/{conv}/messages", late_answer)
    w.input.fill("One more thing")
    w.input.press("Enter")
    expect(w.role("system").last).to_contain_text("Alex ended the chat.")
    expect(w.role("customer").last).to_contain_text("One more thing")
    page.wait_for_timeout(1000)  # the late answer is in the page by now
    expect(page.locator('[data-copilot="handoff"]')).to_be_visible(timeout=100)
    expect(page.locator('[data-copilot="cancel-handoff"]')).to_be_hidden(timeout=100)


def test_a_reload_and_a_second_tab_resume_the_conversation(
    desk: AgentDesk, site: DemoSite, page: Any
) -> None:
    w = Widget(page).open(site.url)
    w.ask("How long does a refund take?")
    page.locator('[data-copilot="handoff"]').click()
    expect(page.locator('[data-copilot="cancel-handoff"]')).to_be_visible()
    conv = w.conversation()["id"]
    desk.wait_for_session(conv)
    assert desk.join(conv, agent="Sam").ok
    expect(w.role("system").last).to_contain_text("Sam joined")
    before = texts(w.messages)

    page.reload()
    ready(page)
    expect(w.panel).to_be_visible()  # it was open
    expect(w.messages).to_have_count(len(before))
    assert texts(w.messages) == before
    assert w.conversation()["id"] == conv
    expect(page.locator('[data-copilot="cancel-handoff"]')).to_have_text("Leave agent chat")
    assert desk.say(conv, "Still there after your reload?", agent="Sam").ok  # polled again
    expect(w.role("agent").last).to_contain_text("Still there after your reload?")

    second = Widget(page.context.new_page())
    second.open(site.url)
    expect(second.role("agent").last).to_contain_text("Still there after your reload?")
    assert second.conversation()["id"] == conv
    second.page.close()

    page.locator('[data-copilot="cancel-handoff"]').click()  # leave the agent's chat
    expect(page.locator('[data-copilot="handoff"]')).to_be_visible()


def test_an_expired_conversation_says_so_and_a_new_one_works(
    copilot: Copilot, api: str, site: DemoSite, page: Any
) -> None:
    w = Widget(page)
    page.goto(site.url)
    ready(page)
    key = f"copilot-widget:{api}:{copilot.copilot_id}"
    gone: dict[str, Any] = {
        "conv": {"id": "c-expired-long-ago", "token": "t" * 32, "seq": 4},
        "open": False,
    }
    page.evaluate("([k, v]) => sessionStorage.setItem(k, v)", [key, json.dumps(gone)])
    page.reload()
    ready(page)
    w.launcher.click()
    expect(w.status).to_contain_text("previous conversation has expired")
    expect(w.messages).to_have_count(1)  # a fresh conversation's start message
    answer = w.ask("How long does a refund take?")
    expect(answer.locator('a[data-copilot="citation"]').first).to_be_visible()
    assert w.conversation()["id"] != gone["conv"]["id"]
    expect(w.status).to_have_text("")


def _inert(page: Any, message: Any) -> None:
    """Nothing of the markup became an element, a link or a side effect."""
    assert message.locator("script, img:not(.av), iframe").count() == 0
    for href in message.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))"):
        assert href is None or href.startswith(("http://", "https://")), href
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.__pwned") is None


def test_markup_from_documents_and_agents_renders_as_text(
    desk: AgentDesk, site: DemoSite, page: Any
) -> None:
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: errors.append(str(e)))
    w = Widget(page).open(site.url)
    answer = w.ask("What is the storm grey paint code for the Voyager frame?")
    cites = answer.locator('[data-copilot="citation"]').all_inner_texts()
    assert any("paint-colours.md" in c for c in cites), cites
    shown = answer.locator('[data-copilot="text"]').inner_text()
    shown += " ".join(answer.locator(".tip").all_text_contents())
    assert "<script>" in shown and "<img src=x onerror=" in shown, shown  # as text
    _inert(page, answer)

    page.locator('[data-copilot="handoff"]').click()
    conv = w.conversation()["id"]
    desk.wait_for_session(conv)
    assert desk.say(conv, PAYLOAD, agent="Eve").ok
    said = w.role("agent").last
    expect(said.locator('[data-copilot="text"]')).to_contain_text('<img src=x onerror="')
    expect(said.locator('[data-copilot="text"]')).to_contain_text("<b>bold?</b>")
    expect(said.locator('[data-copilot="text"]')).to_contain_text("click")
    assert said.locator("b").count() == 0
    _inert(page, said)
    # What Markdown may do, it does: a web link, a list, code.
    assert desk.say(
        conv, "See [returns](https://northwind-bikes.example/returns):\n- one\n- `two`"
    ).ok
    said = w.role("agent").last
    expect(said.locator("li")).to_have_text(["one", "two"])
    expect(said.locator("li code")).to_have_text("two")
    link = said.locator("a", has_text="returns")
    expect(link).to_have_attribute("href", "https://northwind-bikes.example/returns")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert dialogs == [] and errors == []
    page.locator('[data-copilot="cancel-handoff"]').click()


def test_a_site_the_copilot_does_not_allow_gets_no_chat(
    copilot: Copilot, api: str, page: Any
) -> None:
    with DemoSite(api, copilot.copilot_id) as other:  # another port: another origin
        w = Widget(page).open(other.url)
        expect(w.status).to_have_text("This chat is not available on this site.")
        expect(w.messages).to_have_count(0)
        expect(w.input).to_be_disabled()
        refused = other.origin
    preflight = requests.options(
        f"{api}/copilots/{copilot.copilot_id}/conversations",
        headers={"Origin": refused, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 403
    assert preflight.json()["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_on_a_phone_the_panel_fills_the_screen(site: DemoSite, page: Any) -> None:
    page.set_viewport_size({"width": 375, "height": 667})
    page.emulate_media(reduced_motion="reduce")  # and no opening animation then
    w = Widget(page).open(site.url)
    expect(w.role("bot").first).to_be_visible()
    assert w.panel.evaluate("p => getComputedStyle(p).animationName") == "none"
    box = w.panel.bounding_box()
    assert box == {"x": 0, "y": 0, "width": 375, "height": 667}, box
    page.locator('[data-copilot="close"]').click()
    expect(w.panel).to_be_hidden()
