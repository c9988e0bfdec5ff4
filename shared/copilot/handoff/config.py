"""What the hand-off's parts share from the deployment: its tuning, and the hubs' secrets."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from copilot.errors import UnavailableError
from copilot.handoff.models import HubSettings
from copilot.ports import SecretStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandoffConfig:
    reorder_window: float = 10.0  # seconds an event ahead of a gap waits for the gap to fill
    max_held: int = 100  # events held at most; beyond, the gap is skipped at once
    max_held_bytes: int = 150_000  # and their size (they are stored on the conversation's item)
    max_ahead: int = 200  # a sequence number further past the last one in order is refused
    max_attempts: int = 5  # deliveries of a start before the customer is told it failed
    reply_to: str | None = None  # public base URL of the hand-off function (webhooks)
    request_interval: bool = True  # Copilot.limits.handoff_interval_seconds applies
    pull_window: float = 20.0  # seconds one pull job reads a hub without webhooks (pull.py)

    def __post_init__(self) -> None:
        if self.max_ahead <= self.max_held:
            # A backlog of max_held events replayed out of order must still be taken in.
            raise ValueError("max_ahead must be greater than max_held")


def hub_secret(
    secrets: SecretStore, hub: HubSettings, error: type[Exception] = UnavailableError
) -> str:
    """The secret shared with ``hub`` (signs both directions, or the hub's credentials as
    JSON); ``error`` if it is missing. "" for a hub that takes none (Connect: the IAM role)."""
    if hub.secret_ref is None:
        return ""
    secret = secrets.get(hub.secret_ref)
    if not secret:
        log.error("no secret for hub secret_ref %s (COPILOT_HUB_SECRET_<REF>)", hub.secret_ref)
        raise error("the hub's secret is not configured")
    return secret
