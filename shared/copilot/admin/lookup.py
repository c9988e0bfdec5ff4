"""Finding a copilot a request names: the one place that turns "no such copilot" into a 404."""

from __future__ import annotations

from copilot.admin.models import Copilot
from copilot.errors import NotFoundError
from copilot.ports import CopilotRegistry


def require_copilot(copilots: CopilotRegistry, copilot_id: str) -> Copilot:
    copilot = copilots.get(copilot_id)
    if copilot is None:
        raise NotFoundError(f"no copilot with id '{copilot_id}'")
    return copilot
