"""Live-agent hubs: one module per hub, each a HubAdapter (verify, parse, send).

``generic`` is the signed-webhook contract of docs/handoff-generic-hub.md; the named hubs of
reference/hubs.md (Dynamics 365, ServiceNow, Salesforce, LivePerson, Genesys) add a module each.
"""

from __future__ import annotations

from copilot.errors import NotFoundError
from copilot.ports import HubAdapter


def adapter_for(hub_type: str, *, timeout: float = 10, tolerance: int = 300) -> HubAdapter:
    if hub_type == "generic":
        from copilot.handoff.hubs.generic import GenericHub

        return GenericHub(timeout=timeout, tolerance=tolerance)
    raise NotFoundError(f"no hub called '{hub_type}'")
