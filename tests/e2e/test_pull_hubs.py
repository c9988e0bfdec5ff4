"""Hubs without webhooks (Salesforce MIAW's Server-Sent Events, Dynamics 365's Direct Line),
read by pull jobs (handoff/pull.py) on the whole local stack: a long hand-off with agent
messages at random times delivers every message once and in order across many job handovers,
and once it ends no job is left scheduled.

The issue asks for a 10-minute hand-off; here it lasts ``SOAK_SECONDS`` (24 s, eight 3-second
pull windows) to keep the suite short, and ``bench/pull_soak.py --minutes 10`` runs the long
one (docs/benchmarks-handoff.md has its figures)."""

from __future__ import annotations

import importlib.util
import random
import time
from collections.abc import Iterator

import pytest

from copilot_dev.emulators.desk import HubDesk
from copilot_dev.emulators.hubs import EMULATORS, emulator
from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT, wait_for

pytestmark = pytest.mark.e2e

PULL_HUBS = [
    h
    for h in ("salesforce", "dynamics365")
    if importlib.util.find_spec(EMULATORS[h].partition(":")[0])
]
WINDOW = 3.0  # seconds a pull job reads
SOAK_SECONDS = 24.0


@pytest.fixture(scope="module", params=PULL_HUBS)
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStack, HubDesk]]:
    with emulator(request.param) as desk:
        config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("pull-stack"))
        config.extra_env = desk.stack_env()
        config.hub_pull_window = WINDOW
        with LocalStack(config) as stack:
            desk.webhook_url = config.function_url("handoff")
            yield stack, desk


def test_a_long_hand_off_is_read_across_job_handovers_and_its_jobs_stop_at_the_end(
    setup: tuple[LocalStack, HubDesk],
) -> None:
    stack, desk = setup
    client = stack.copilot_client()
    copilot_id = client.create_copilot({"name": "Northwind", "hub": desk.hub_settings()}).copilot_id
    desk.connect_copilot(copilot_id)
    started = client.start(copilot_id)
    conv, token = started.conversation_id, started.token
    client.send(conv, token, "talk to a person")
    desk.wait_for_session(conv)
    jobs_before = stack.pull_jobs_run
    rng = random.Random(15)
    sent: list[str] = []
    deadline = time.time() + SOAK_SECONDS
    while time.time() < deadline:
        text = f"agent message {len(sent) + 1}"
        assert desk.say(conv, text).ok
        sent.append(text)
        time.sleep(rng.uniform(0.05, 2 * WINDOW))  # some land across a job's handover

    def agent_said() -> list[str]:
        return [m.text for m in client.messages(conv, token).messages if m.role == "agent"]

    wait_for(
        lambda: agent_said()[-1:] == sent[-1:],
        timeout=2 * WINDOW + 10,
        what="the last agent message",
    )
    shown = agent_said()
    assert shown == sent  # every one, once, in order
    assert stack.pull_jobs_run - jobs_before >= SOAK_SECONDS / WINDOW - 2  # many handovers

    assert desk.end(conv).ok
    wait_for(lambda: client.messages(conv, token).state == "bot", what="the copilot to resume")
    wait_for(
        lambda: stack.pull_jobs_pending() == 0,
        timeout=WINDOW + 15,
        what="the pull jobs to stop after the hand-off ended",
    )
    ran = stack.pull_jobs_run
    time.sleep(WINDOW + 2)
    assert stack.pull_jobs_pending() == 0 and stack.pull_jobs_run == ran  # none came back
