"""The agent desk's web page in Chromium, against the whole local stack: an agent sees the
waiting hand-off with the customer's context, replies from the page (the customer's messages
show it), ends it (the copilot takes the conversation back); without the desk's token the page
shows nothing; axe-core finds no serious or critical accessibility problem."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from playwright.sync_api import expect

from copilot_dev.client import CopilotClient
from copilot_dev.emulators.agent_desk import AgentDesk, DeskSession
from tests.browser.conftest import axe_violations
from tests.conftest import desk_stack, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SECRET = "browser-desk-secret"
T = TypeVar("T")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CopilotClient]:
    with desk_stack(tmp_path_factory, "desk-page-stack", SECRET) as stack:
        yield stack.copilot_client()


def escalate(client: CopilotClient, desk: AgentDesk) -> tuple[str, str, DeskSession]:
    copilot_id = client.create_copilot(
        {
            "name": "Northwind",
            "hub": {
                "type": "generic",
                "url": desk.hub_url,
                "secret_ref": "DESK",
                "agent_note": "Loyal customer",
            },
        }
    ).copilot_id
    started = client.start(copilot_id, variables={"name": "Ann"})
    conv, token = started.conversation_id, started.token
    client.send(conv, token, "Can I pay for a repair with bitcoin?")
    assert client.send(conv, token, "talk to a person").state == "handoff_requested"
    return conv, token, desk.wait_for_session(conv)


def agent_texts(client: CopilotClient, conv: str, token: str) -> list[str]:
    return [m.text or "" for m in client.messages(conv, token).messages if m.role == "agent"]


def test_an_agent_replies_from_the_page_and_ends_the_hand_off(
    client: CopilotClient, desk: AgentDesk, page: Any
) -> None:
    conv, token, session = escalate(client, desk)
    page.goto(desk.page_url)
    context = page.locator("#ctx")
    expect(context).to_contain_text(conv)  # the latest hand-off is selected
    expect(context).to_contain_text("Note to agent: Loyal customer")
    expect(context).to_contain_text("bitcoin")
    expect(page.locator("#list")).to_contain_text("Northwind · waiting")
    expect(page.locator("#log")).to_contain_text("Customer: Can I pay for a repair with bitcoin?")
    assert desk.token not in page.url  # the token left the address bar

    page.get_by_label("Reply to the customer").fill("Hi Ann, Alex here. Bitcoin it is.")
    page.get_by_role("button", name="Send", exact=True).click()
    wait_for(
        lambda: agent_texts(client, conv, token) == ["Hi Ann, Alex here. Bitcoin it is."],
        what="the agent's reply in the customer's messages",
    )
    expect(page.locator("#log")).to_contain_text("Alex: Hi Ann, Alex here. Bitcoin it is.")
    expect(page.get_by_label("Reply to the customer")).to_have_value("")

    page.get_by_role("button", name="End", exact=True).click()
    wait_for(lambda: client.messages(conv, token).state == "bot", what="the copilot to resume")
    assert session.status == "ended"
    expect(page.locator("#list")).to_contain_text("Northwind · ended")
    events = [m.event for m in client.messages(conv, token).messages]
    # Ended, the copilot's "I'm back", then its survey (copilot.conversation.survey).
    assert "agent_joined" in events and events[-3:] == ["handoff_ended", None, None]


def test_without_the_token_the_page_shows_how_to_open_it_and_no_data(
    client: CopilotClient, desk: AgentDesk, page: Any
) -> None:
    conv, _, _ = escalate(client, desk)
    page.goto(desk.url + "/")
    expect(page.locator("#ctx")).to_contain_text("Open the desk with the link")
    page.wait_for_timeout(1500)  # past the page's next refresh
    text = page.locator("body").inner_text()
    assert conv not in text and "bitcoin" not in text and "Northwind" not in text
    assert "Open the desk with the link" in text


def test_the_desk_page_has_no_serious_accessibility_violations(
    client: CopilotClient, desk: AgentDesk, page: Any
) -> None:
    conv, _, _ = escalate(client, desk)
    page.goto(desk.page_url)
    expect(page.locator("#ctx")).to_contain_text(conv)
    expect(page.locator("#log")).to_contain_text("Customer:")
    violations = axe_violations(page)
    assert violations == [], violations
