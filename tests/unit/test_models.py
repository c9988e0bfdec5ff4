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
        (
            {
                "name": "x",
                "topics": [{"name": "t", "trigger_phrases": ["ok", "  "], "response": "r"}],
            },
            "topics.0.trigger_phrases.1",
        ),
        (
            {"name": "x", "hub": {"type": "generic", "url": "ftp://h", "secret_ref": "S"}},
            "hub.generic.url",
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


def test_trigger_phrases_are_stripped_and_at_most_200_characters() -> None:
    topic = {"name": "t", "response": "r"}
    spec = CopilotSpec.model_validate(
        {"name": "x", "topics": [{**topic, "trigger_phrases": ["  opening hours "]}]}
    )
    assert spec.topics[0].trigger_phrases == ["opening hours"]
    assert CopilotSpec.model_validate(
        {"name": "x", "topics": [{**topic, "trigger_phrases": [" " + "p" * 200 + " "]}]}
    )
    with pytest.raises(ValidationError):
        CopilotSpec.model_validate(
            {"name": "x", "topics": [{**topic, "trigger_phrases": ["p" * 201]}]}
        )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": None}, "name"),
        ({"strictness": None}, "strictness"),
        ({"topics": None}, "topics"),
        ({"messages": {"greeting": None}}, "messages.greeting"),
    ],
)
def test_patch_refuses_null_where_the_copilot_has_no_empty_value(
    data: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError, match="send a value or leave the field out") as info:
        CopilotPatch.model_validate(data)
    assert ".".join(map(str, info.value.errors()[0]["loc"])) == field


def test_patch_null_clears_instructions_and_hub() -> None:
    patch = CopilotPatch.model_validate({"instructions": None, "hub": None})
    assert patch.model_fields_set == {"instructions", "hub"}
    assert patch.instructions is None and patch.hub is None
