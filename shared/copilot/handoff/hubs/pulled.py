"""What every hub whose agent events are pulled shares (Salesforce MIAW, Dynamics 365's Direct
Line): it calls no webhook of ours, so any call on ``/hooks/<hub>/...`` is someone else's and is
refused, whatever it carries. Its events come through HubAdapter.pull (handoff/pull.py)."""

from __future__ import annotations

from datetime import datetime

from copilot.errors import BadRequestError, ForbiddenError
from copilot.handoff.models import HubEvent, HubSettings
from copilot.ports import HubAdapter, InboundRequest


class PulledHub(HubAdapter):
    title = "This hub"  # for the refusals: "Salesforce", "Dynamics 365"

    def verify(
        self, request: InboundRequest, hub: HubSettings | None, secret: str, now: datetime
    ) -> None:
        raise ForbiddenError(f"{self.title} delivers no webhooks: its events are pulled")

    def parse(self, request: InboundRequest, hub: HubSettings) -> list[HubEvent]:
        raise BadRequestError(f"{self.title} delivers no webhooks: its events are pulled")
