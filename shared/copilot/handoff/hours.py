"""Business hours of a hub, in its own time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from copilot.handoff.models import WEEKDAYS, HubSettings


def is_open(hub: HubSettings, now: datetime) -> bool:
    """Whether ``now`` falls in one of the hub's windows (no windows: always open)."""
    if not hub.business_hours:
        return True
    local = now.astimezone(ZoneInfo(hub.timezone))
    day = WEEKDAYS[local.weekday()]
    clock = local.strftime("%H:%M")
    return any(day in w.days and w.start <= clock < w.end for w in hub.business_hours)
