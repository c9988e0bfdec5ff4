"""Chaos during a live hand-off, on a stack of its own: the hub is down for a minute, it
re-delivers every agent event up to five times in random order, Chroma restarts, and the
customer's client retries every request once. Afterwards every message exists exactly once, in
order, on both sides, and the copilot answers from its knowledge again."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from copilot_dev.demo import upload_files
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

SECRET = "chaos-desk-secret"
OUTAGE_SECONDS = 60
QUESTION = "When does the Portland workshop open?"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("chaos-stack"))
    config.extra_env = {"COPILOT_HUB_SECRET_DESK": SECRET}
    config.hub_backoff_base = 1  # the outbox retries every 1-4 s while the hub is down
    config.hub_backoff_max = 4
    config.outbox_visibility_timeout = 5
    config.handoff_reorder_window = 300  # every gap fills here: order is asserted strictly
    with LocalStack(config) as running:
        yield running


class Customer:
    """A web chat client that retries every request once (as after a timeout): writes with the
    same Idempotency-Key, so the retry must not store anything twice."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.conversation_id = ""
        self.token = ""

    def _twice(self, send: Callable[[], requests.Response]) -> dict[str, Any]:
        with ThreadPoolExecutor(2) as pool:  # the retry races the first attempt
            first, retry = [f.result() for f in [pool.submit(send), pool.submit(send)]]
        assert first.status_code < 300, first.text
        assert retry.status_code < 300, retry.text
        assert retry.json() == first.json()  # the same outcome, whoever won
        return dict(first.json())

    def start(self, copilot_id: str) -> None:
        key = uuid.uuid4().hex
        started = self._twice(
            lambda: requests.post(
                f"{self.base}/copilots/{copilot_id}/conversations",
                json={},
                headers={"Idempotency-Key": key},
                timeout=30,
            )
        )
        self.conversation_id, self.token = started["conversation_id"], started["token"]

    def say(self, text: str) -> dict[str, Any]:
        key = uuid.uuid4().hex
        return self._twice(
            lambda: requests.post(
                f"{self.base}/conversations/{self.conversation_id}/messages",
                json={"text": text},
                headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": key},
                timeout=30,
            )
        )

    def messages(self) -> list[dict[str, Any]]:
        url = f"{self.base}/conversations/{self.conversation_id}/messages?limit=500"
        auth = {"Authorization": f"Bearer {self.token}"}
        pages = [self.http.get(url, headers=auth, timeout=30) for _ in range(2)]
        for response in pages:
            assert response.status_code == 200, response.text  # a poll never fails
        return list(pages[-1].json()["messages"])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.2)


def test_a_hand_off_survives_hub_outage_redelivery_chroma_restart_and_client_retries(
    stack: LocalStack, tmp_path: Path
) -> None:
    rng = random.Random(13)
    client = stack.copilot_client()
    with AgentDesk(SECRET, retries=1) as desk:
        copilot_id = client.create_copilot(
            {"name": "Chaos", "hub": {"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"}}
        ).copilot_id
        doc = tmp_path / "hours.md"
        doc.write_text(
            "# Workshop hours\n\nThe Portland workshop opens at 8 am, Monday to Saturday.\n"
        )
        upload_files(stack.client("s3"), stack.config.bucket, copilot_id, [doc], tmp_path)
        wait_until(
            lambda: [d.status for d in client.documents(copilot_id)] == ["indexed"],
            60,
            "the knowledge to be indexed",
        )

        customer = Customer(stack.config.function_url("chat"))
        customer.start(copilot_id)
        answered = customer.say(QUESTION)["messages"][-1]
        assert "8 am" in answered["text"] and answered["citations"]
        assert customer.say("talk to a person")["state"] == "handoff_requested"
        session = desk.wait_for_session(customer.conversation_id)
        assert desk.join(session.handoff_id).ok
        assert desk.say(session.handoff_id, "Hi, Alex here.").ok

        # --- a minute of chaos ----------------------------------------------------------------
        agent_texts = [f"agent line {i}" for i in range(8)]
        events = [desk.event(session, "agent.message", text=t) for t in agent_texts]
        deliveries = [e for e in events for _ in range(rng.randint(1, 5))]
        rng.shuffle(deliveries)
        customer_texts = [f"customer line {i}" for i in range(6)]
        # One schedule: agent deliveries and customer lines interleaved at random (customer
        # lines keep their order), and Chroma restarting a third of the way in.
        slots = [("agent", e) for e in deliveries] + [("customer", t) for t in customer_texts]
        kinds = [kind for kind, _ in slots]
        rng.shuffle(kinds)
        queues = {
            "agent": [e for k, e in slots if k == "agent"],
            "customer": [t for k, t in slots if k == "customer"],
        }
        schedule: list[tuple[str, Any]] = [(kind, queues[kind].pop(0)) for kind in kinds]
        schedule.insert(len(schedule) // 3, ("restart", "chroma"))
        step = OUTAGE_SECONDS / len(schedule)
        desk.fail_with = 503  # the hub takes nothing from the copilot
        started = time.time()
        try:
            for kind, item in schedule:
                if kind == "restart":
                    # From this thread: a service dies with the thread that started it.
                    stack.restart(str(item), down_seconds=3)
                elif kind == "customer":
                    turn = customer.say(str(item))
                    assert [m["role"] for m in turn["messages"]] == ["customer"]
                else:
                    answer = desk.deliver(session, item, retries=1)
                    assert answer.status_code == 200, answer.text
                customer.messages()  # the web chat polls throughout
                time.sleep(step)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.time() - started)))
            assert desk.session(session.handoff_id).customer_texts == []  # nothing got through
        finally:
            desk.fail_with = None

        # --- the hub is back ------------------------------------------------------------------
        wait_until(
            lambda: len(desk.session(session.handoff_id).customer_texts) >= len(customer_texts),
            60,
            "the customer's messages to reach the hub",
        )
        assert desk.end(session.handoff_id).ok
        time.sleep(3)  # any stray redelivery would land now

        hub_side = desk.session(session.handoff_id).customer_texts
        assert hub_side == customer_texts  # once each, in order
        messages = customer.messages()
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
        agent_said = [m["text"] for m in messages if m["role"] == "agent"]
        assert agent_said == ["Hi, Alex here.", *agent_texts]  # once each, in the hub's order
        customer_said = [m["text"] for m in messages if m["role"] == "customer"]
        assert customer_said == [QUESTION, "talk to a person", *customer_texts]
        assert [m["event"] for m in messages if m["role"] == "system"][-1] == "handoff_ended"

        # Chroma came back with its index: the copilot answers from its knowledge again.
        again = customer.say(QUESTION)["messages"][-1]
        assert "8 am" in again["text"] and again["citations"]
