from __future__ import annotations

import pytest
from pydantic import ValidationError

from copilot.admin.models import CopilotPatch, CopilotSpec
from copilot.conversation.models import PostMessageRequest


def test_defaults_cover_all_seven_behaviour_messages() -> None:
    messages = CopilotSpec(name="x").messages.model_dump()
    for name in (
        "greeting",
        "start_over",
        "conversation_start",
        "escalate_link",
        "no_match",
        "multiple_topics_matched",
        "reset_conversation",
    ):
        assert messages[name].strip()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "no_match_threshold": 0}, "no_match_threshold"),
        ({"name": "x", "language": "English"}, "language"),
        ({"name": "x", "messages": {"greeting": ""}}, "messages.greeting"),
        (
            {"name": "x", "topics": [{"name": "t", "trigger_phrases": [], "response": "r"}]},
            "topics.0.trigger_phrases",
        ),
        ({"name": "x", "colour": "blue"}, "colour"),
    ],
)
def test_invalid_specs_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        CopilotSpec.model_validate(data)
    assert ".".join(map(str, info.value.errors()[0]["loc"])) == field


def test_duplicate_topic_names_are_rejected() -> None:
    topic = {"name": "Hours", "trigger_phrases": ["hours"], "response": "9-5"}
    with pytest.raises(ValidationError, match="unique"):
        CopilotPatch.model_validate({"topics": [topic, {**topic, "name": "hours"}]})


def test_message_text_limits() -> None:
    with pytest.raises(ValidationError):
        PostMessageRequest(text="   ")
    with pytest.raises(ValidationError):
        PostMessageRequest(text="x" * 4001)
    assert PostMessageRequest(text="x" * 4000).text
