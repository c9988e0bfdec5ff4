"""Live-agent hand-off: start it, relay the conversation both ways, end it.

One object for the three callers (the chat turn, the hub's webhook, the outbox consumer),
composed of the three sides, each in its own module:

- customer.py: the customer asks for a person, talks to the agent, stops waiting;
- inbound.py: the hub's webhook events, applied once each and in the hub's order;
- delivery.py: the outbox, delivering the customer's side to the hub in order.

They share changes.py (how a hand-off changes a conversation, and the conditional write that
every change goes through) and config.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from copilot.handoff.config import HandoffConfig
from copilot.handoff.customer import CustomerSide
from copilot.handoff.delivery import OutboxDelivery, backoff_seconds
from copilot.handoff.inbound import InboundEvents
from copilot.handoff.pull import PullJobs
from copilot.ports import (
    ConversationStore,
    CopilotRegistry,
    EventQueue,
    HubAdapter,
    HubOutbox,
    SecretStore,
)
from copilot.schema import utcnow

__all__ = ["HandoffConfig", "HandoffService", "backoff_seconds"]


class HandoffService:
    def __init__(
        self,
        copilots: CopilotRegistry,
        conversations: ConversationStore,
        *,
        outbox: Callable[[], HubOutbox],
        secrets: Callable[[], SecretStore],
        hubs: Callable[[str], HubAdapter],
        config: HandoffConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        pull_queue: Callable[[], EventQueue] | None = None,
    ) -> None:
        self.config = config or HandoffConfig()
        customer = CustomerSide(
            conversations,
            outbox=outbox,
            clock=clock,
            request_interval=self.config.request_interval,
        )
        inbound = InboundEvents(
            copilots, conversations, secrets=secrets, hubs=hubs, config=self.config, clock=clock
        )
        pulls = PullJobs(
            copilots,
            conversations,
            queue=pull_queue or _no_pull_queue,
            secrets=secrets,
            hubs=hubs,
            apply=inbound.apply,
            window=self.config.pull_window,
            clock=clock,
        )
        delivery = OutboxDelivery(
            copilots,
            conversations,
            outbox=outbox,
            secrets=secrets,
            hubs=hubs,
            config=self.config,
            started=pulls.started,
        )
        # The chat turn's side
        self.available = customer.available
        self.open = customer.open
        self.forward = customer.forward
        self.cancel = customer.cancel
        self.nudge = customer.nudge
        # The hub's webhooks (and the customer poll that applies events held too long)
        self.receive = inbound.receive
        self.due = inbound.due
        self.flush = inbound.flush
        self.poll = inbound.poll
        # Hubs without webhooks: their pull jobs (and the customer poll that revives them)
        self.run_pull = pulls.run
        self.watch_pull = pulls.watch
        # The outbox consumer
        self.process_outbox = delivery.process_outbox
        self.deliver = delivery.deliver


def _no_pull_queue() -> EventQueue:
    from copilot.errors import UnavailableError

    raise UnavailableError("COPILOT_HUB_PULL_QUEUE_URL is not configured")
