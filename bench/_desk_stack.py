"""The setup the hand-off benchmarks share: the local stack on free ports (temporary data) and
a hub emulator with the agent desk in front (the generic hub's by default; ``hub=`` genesys,
liveperson or connect) as the hub of one copilot."""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class DeskBench:
    stack: Any  # copilot_dev.localstack.LocalStack
    client: Any  # copilot_dev.client.CopilotClient with the admin key
    desk: Any  # copilot_dev.emulators.desk.HubDesk: the hub's emulator
    copilot_id: str

    @property
    def chat_url(self) -> str:
        return str(self.stack.config.function_url("chat"))


@contextmanager
def desk_stack(
    hub: str = "generic", stack: dict[str, Any] | None = None, **spec: Any
) -> Iterator[DeskBench]:
    """Started stack and hub emulator, and a copilot handing off to it (``spec``: more fields
    of the copilot, e.g. allowed_origins; ``stack``: StackConfig fields); everything stops on
    exit."""
    sys.path.insert(0, str(ROOT / "shared"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the desk's request lines
    from copilot_dev.client import CopilotClient
    from copilot_dev.emulators.hubs import emulator
    from copilot_dev.localstack import LocalStack, StackConfig

    with tempfile.TemporaryDirectory() as tmp, emulator(hub) as desk:
        config = StackConfig.with_free_ports(ROOT, Path(tmp))
        config.extra_env = desk.stack_env()
        for name, value in (stack or {}).items():
            setattr(config, name, value)
        desk.webhook_url = config.function_url("handoff")
        t = time.perf_counter()
        with LocalStack(config) as stack:
            print(f"stack up in {time.perf_counter() - t:.1f} s", flush=True)
            client = CopilotClient(config.function_url("chat"), admin_key=config.admin_api_key)
            copilot = client.create_copilot({"name": "Bench", "hub": desk.hub_settings(), **spec})
            desk.connect_copilot(copilot.copilot_id)
            yield DeskBench(stack, client, desk, copilot.copilot_id)


class CustomerPoller(threading.Thread):
    """The customer's side: polls the conversation one poll after another (``wait`` > 0: each a
    long-poll; 0: back-to-back short polls) and notes when each text is first seen."""

    def __init__(self, base_url: str, conversation: str, token: str, wait: int = 0) -> None:
        super().__init__(daemon=True)
        from copilot_dev.client import CopilotClient

        self.client = CopilotClient(base_url)
        self.conversation, self.token, self.wait = conversation, token, wait
        self.seen: dict[str, float] = {}
        self.polls = 0
        self.empty = 0
        self.waiting = threading.Event()  # set while a poll is out
        self.after = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.waiting.set()
            try:
                page = self.client.messages(
                    self.conversation, self.token, after=self.after, wait=self.wait
                )
            except Exception:
                if self.stop.is_set():
                    return  # the stack went down under the last poll: the bench is over
                raise
            now = time.perf_counter()
            self.waiting.clear()
            self.polls += 1
            self.empty += not page.messages
            for m in page.messages:
                self.seen.setdefault(m.text, now)
                self.after = max(self.after, m.seq)

    def wait_for(self, text: str, timeout: float = 30) -> float:
        """When the customer first saw ``text`` (perf_counter), once it has."""
        deadline = time.perf_counter() + timeout
        while text not in self.seen:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the customer never saw {text!r}")
            time.sleep(0.0005)
        return self.seen[text]
