"""A known mix of conversations for the analytics tests (tests/e2e/test_analytics.py, and the
analytics page in tests/browser), driven through a running local stack and its agent desk.

A: answered from knowledge, then thanks, then a CSAT of 5 with a comment holding an email;
B: no match, then quiet (abandoned once the copilot's 1-minute limit has passed);
C: escalated, the agent answers and ends, the customer rates it 2;
D: answered, thumbs down on the answer (then quiet: abandoned).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from copilot.analytics.report import AnalyticsReport
from copilot.conversation import survey
from copilot.conversation.models import StartConversationResponse
from copilot_dev.client import CopilotClient
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.localstack import LocalStack
from tests.conftest import wait_for

REPAIRS = (
    b"# Repairs\n\nA flat tyre repair costs 15 euros and takes about 30 minutes at any shop.\n\n"
    b"# Opening hours\n\nOur shops open at 9am and close at 6pm, Monday to Saturday.\n"
)
# A: started, answer, thanks + resolved, the score + csat + resolved | B: started, no match |
# C: started, escalation + escalated, agent joined, hand-off ended, the score + csat |
# D: started, answer, feedback
EVENTS = 7 + 2 + 7 + 3


@dataclass
class Mix:
    copilot_id: str
    a: StartConversationResponse
    b: StartConversationResponse
    c: StartConversationResponse
    d: StartConversationResponse
    until: datetime  # two minutes after the mix: past the 1-minute abandonment

    @property
    def ids(self) -> list[str]:
        return [x.conversation_id for x in (self.a, self.b, self.c, self.d)]


def knowledgeable_copilot(stack: LocalStack, client: CopilotClient, desk: AgentDesk) -> str:
    spec = {
        "name": "Spokes",
        "hub": {"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"},
        "analytics": {"abandon_after_minutes": 1},
    }
    copilot_id = client.create_copilot(spec).copilot_id
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.config.bucket, Key=f"{copilot_id}/repairs.md", Body=REPAIRS)
    wait_for(
        lambda: [d for d in client.documents(copilot_id) if d.status == "indexed"],
        timeout=60,
        what="the document to be indexed",
    )
    return copilot_id


def drive(stack: LocalStack, client: CopilotClient, desk: AgentDesk) -> Mix:
    copilot_id = knowledgeable_copilot(stack, client, desk)

    a = client.start(copilot_id)
    answer = client.send(a.conversation_id, a.token, "How much does a flat tyre repair cost?")
    assert "15 euros" in answer.messages[-1].text and answer.messages[-1].citations
    thanked = client.send(a.conversation_id, a.token, "thanks")
    assert thanked.messages[-1].text == survey.ASK
    client.send(a.conversation_id, a.token, "5 - quick, mail me at ann@example.com")

    b = client.start(copilot_id)
    nothing = client.send(b.conversation_id, b.token, "Do you rent submarines?")
    assert nothing.messages[-1].topic == "No match"

    c = client.start(copilot_id)
    assert client.send(c.conversation_id, c.token, "talk to a person").state == "handoff_requested"
    desk.wait_for_session(c.conversation_id)
    assert desk.join(c.conversation_id).ok and desk.say(c.conversation_id, "Hi, Sam here.").ok
    assert desk.end(c.conversation_id).ok
    wait_for(
        lambda: client.messages(c.conversation_id, c.token).messages[-1].text == survey.ASK,
        what="the survey after the agent ended",
    )
    rated = client.send(c.conversation_id, c.token, "2")
    assert rated.messages[-1].text == survey.THANKS

    d = client.start(copilot_id)
    hours = client.send(d.conversation_id, d.token, "When do your shops open?")
    reply = hours.messages[-1]
    assert reply.citations
    client.feedback(d.conversation_id, d.token, reply.seq, "down", comment="call 555-123-4567")
    return Mix(copilot_id, a, b, c, d, until=datetime.now(UTC) + timedelta(minutes=2))


def report(client: CopilotClient, copilot_id: str, until: datetime) -> AnalyticsReport:
    return client.analytics(copilot_id, since="1h", until=until.isoformat())


def archived(client: CopilotClient, mix: Mix) -> AnalyticsReport:
    """The report once every event of the mix is in the archive."""
    return wait_for(
        lambda: (r := report(client, mix.copilot_id, mix.until)).events >= EVENTS and r,
        timeout=30,
        what="every event in the archive",
    )
