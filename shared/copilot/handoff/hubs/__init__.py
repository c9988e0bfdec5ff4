"""Live-agent hubs: one module per hub, each a HubAdapter (verify, parse, send).

``generic`` is the signed-webhook contract of docs/handoff-generic-hub.md; the named hubs
(docs/hubs/) each add a module: ``genesys`` (Genesys Cloud Open Messaging), ``liveperson``
(LivePerson Connector API), ``connect`` (Amazon Connect chat, agent events over SNS),
``servicenow`` (Virtual Agent Bot Integration API), ``salesforce`` (Messaging for In-App and
Web, agent events pulled from Server-Sent Events), ``dynamics365`` (a custom channel over
Direct Line 3.0, agent activities pulled). What they
share lives once beside them: ``http`` (calls and error mapping), ``oauth`` (token cache,
client credentials), ``signatures`` (HMAC headers), ``credentials`` (the JSON secret).
"""

from __future__ import annotations

from copilot.errors import NotFoundError
from copilot.ports import HubAdapter


def adapter_for(
    hub_type: str, *, timeout: float = 10, tolerance: int = 300, sns_cert_hosts: str = ""
) -> HubAdapter:
    if hub_type == "generic":
        from copilot.handoff.hubs.generic import GenericHub

        return GenericHub(timeout=timeout, tolerance=tolerance)
    if hub_type == "genesys":
        from copilot.handoff.hubs.genesys import GenesysHub

        return GenesysHub(timeout=timeout)
    if hub_type == "liveperson":
        from copilot.handoff.hubs.liveperson import LivePersonHub

        return LivePersonHub(timeout=timeout)
    if hub_type == "connect":
        from copilot.handoff.hubs.connect import ConnectHub

        hosts = tuple(h.strip() for h in sns_cert_hosts.split(",") if h.strip())
        return ConnectHub(timeout=timeout, extra_cert_hosts=hosts)
    if hub_type == "servicenow":
        from copilot.handoff.hubs.servicenow import ServiceNowHub

        return ServiceNowHub(timeout=timeout)
    if hub_type == "salesforce":
        from copilot.handoff.hubs.salesforce import SalesforceHub

        return SalesforceHub(timeout=timeout)
    if hub_type == "dynamics365":
        from copilot.handoff.hubs.dynamics365 import Dynamics365Hub

        return Dynamics365Hub(timeout=timeout)
    raise NotFoundError(f"no hub called '{hub_type}'")
