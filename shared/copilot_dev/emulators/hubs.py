"""Every hub emulator, by hub type: what ``copilot up --hub`` and the hand-off tests start."""

from __future__ import annotations

import importlib
import secrets
from typing import Any

from copilot_dev.emulators.desk import HubDesk

EMULATORS = {
    "generic": "copilot_dev.emulators.agent_desk:AgentDesk",
    "genesys": "copilot_dev.emulators.genesys:GenesysEmulator",
    "liveperson": "copilot_dev.emulators.liveperson:LivePersonEmulator",
    "connect": "copilot_dev.emulators.connect:ConnectEmulator",
    "servicenow": "copilot_dev.emulators.servicenow:ServiceNowEmulator",
    "salesforce": "copilot_dev.emulators.salesforce:SalesforceEmulator",
    "dynamics365": "copilot_dev.emulators.dynamics365:Dynamics365Emulator",
}


def emulator(hub_type: str, **options: Any) -> HubDesk:
    """A new (not started) emulator of ``hub_type`` with its own random credentials.
    ``options``: HubDesk's (host, port, webhook_url, agent_name, retries, token)."""
    module, _, name = EMULATORS[hub_type].partition(":")
    cls = getattr(importlib.import_module(module), name)
    made = cls(secrets.token_urlsafe(24), **options) if hub_type == "generic" else cls(**options)
    assert isinstance(made, HubDesk)
    return made
