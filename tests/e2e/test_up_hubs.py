"""The README's two-terminal demo against a named hub: ``copilot up --hub X`` starts that hub's
emulator with the agent desk in front, and the demo copilot hands off to it; the agent answers
through the desk's API (what ``copilot agent-desk`` and its web page use)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from copilot_dev.client import CopilotClient
from copilot_dev.desk_console import DeskApi
from tests.conftest import wait_for
from tests.up import Up

pytestmark = pytest.mark.e2e


# The wiring of `copilot up --hub` differs by hub only in the emulator's environment and its
# hub-side setup: Connect (an SNS subscription to confirm) and Salesforce (no secret; agent
# events pulled) cover both; every hub's protocol runs in tests/e2e/test_handoff.py.
@pytest.fixture(params=["connect", "salesforce"])
def up(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path / "data", "--hub", request.param)
    try:
        running.wait_for("Press Ctrl-C")
        yield running
    finally:
        running.stop()


def test_copilot_up_hands_the_demo_copilot_off_to_the_chosen_hub(up: Up) -> None:
    info = json.loads((up.data_dir / "stack.json").read_text())
    desk_line = next(x for x in up.output if x.startswith("Agent desk:"))
    assert f"the {info['hub']} hub emulator" in desk_line
    client = CopilotClient(f"http://127.0.0.1:{up.ports['chat']}")
    started = client.start(info["demo_copilot_id"])
    conv, token = started.conversation_id, started.token
    assert client.send(conv, token, "I want to talk to a person").state == "handoff_requested"

    desk = DeskApi(info["desk_url"], info["desk_token"])
    session = wait_for(
        lambda: next((s for s in desk.sessions() if s["conversation_id"] == conv), None),
        what=f"the hand-off to reach the {info['hub']} emulator",
    )
    assert desk.act(session["handoff_id"], "say", text="Hi, Alex from Northwind here.")
    wait_for(
        lambda: any(
            m.role == "agent" and m.text == "Hi, Alex from Northwind here."
            for m in client.messages(conv, token).messages
        ),
        what="the agent's message in the customer's chat",
    )
    client.send(conv, token, "My chain snapped")
    wait_for(
        lambda: (
            "My chain snapped" in [e["text"] for e in desk.session(session["handoff_id"])["log"]]
        ),
        what="the customer's message at the desk",
    )
    assert desk.act(session["handoff_id"], "end")
    wait_for(lambda: client.messages(conv, token).state == "bot", what="the copilot to resume")
