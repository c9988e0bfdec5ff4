"""The setup the hand-off benchmarks share: the local stack on free ports (temporary data) and
the agent desk (the generic hub emulator) as the hub of one copilot."""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-desk-secret"


@dataclass
class DeskBench:
    stack: Any  # copilot_dev.localstack.LocalStack
    client: Any  # copilot_dev.client.CopilotClient with the admin key
    desk: Any  # copilot_dev.emulators.agent_desk.AgentDesk
    copilot_id: str

    @property
    def chat_url(self) -> str:
        return str(self.stack.config.function_url("chat"))


@contextmanager
def desk_stack(**spec: Any) -> Iterator[DeskBench]:
    """Started stack and desk, and a copilot handing off to the desk (``spec``: more fields of
    the copilot, e.g. allowed_origins); everything stops on exit."""
    sys.path.insert(0, str(ROOT / "shared"))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the desk's request lines
    from copilot_dev.client import CopilotClient
    from copilot_dev.emulators.agent_desk import AgentDesk
    from copilot_dev.localstack import LocalStack, StackConfig

    with tempfile.TemporaryDirectory() as tmp, AgentDesk(SECRET) as desk:
        config = StackConfig.with_free_ports(ROOT, Path(tmp))
        config.extra_env = {"COPILOT_HUB_SECRET_DESK": SECRET}
        t = time.perf_counter()
        with LocalStack(config) as stack:
            print(f"stack up in {time.perf_counter() - t:.1f} s", flush=True)
            client = CopilotClient(config.function_url("chat"), admin_key=config.admin_api_key)
            hub = {"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"}
            copilot = client.create_copilot({"name": "Bench", "hub": hub, **spec})
            yield DeskBench(stack, client, desk, copilot.copilot_id)
