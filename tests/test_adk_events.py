"""Rebuilding ADK events from the JSON sessiondb stored, without validating them again.

The builder must give exactly what ``Event.model_validate`` gives (same values, same nested
classes, same fields set), and validate wherever it cannot be exact.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pydantic
import pytest

pytest.importorskip("google.adk", reason="google-adk is not installed (sessiondb[adk])")

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from sessiondb._adk_events import Builder
from sessiondb.adk import WRITTEN_BY, event_record, to_adk_event
from sessiondb.models import Event as StoredEvent


def corpus() -> list[Event]:
    call = types.FunctionCall(id="call-1", name="lookup", args={"q": "ünïcode ✓", "n": 3})
    return [
        Event(author="user", invocation_id="inv-1", content=types.Content(
            role="user", parts=[types.Part(text="hi 👋")])),
        Event(
            author="helper", invocation_id="inv-1", branch="helper.sub",
            long_running_tool_ids={"call-1", "call-2"},
            content=types.Content(role="model", parts=[
                types.Part(text="looking"), types.Part(function_call=call),
                types.Part(inline_data=types.Blob(mime_type="image/png", data=b"\x89PNG\x00")),
            ]),
            custom_metadata={"trace": {"id": 7, "tags": ["a", "b"]}},
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=10, candidates_token_count=5),
            finish_reason=types.FinishReason.STOP,
            actions=EventActions(state_delta={"seen": 1.5, "n": 2},
                                 artifact_delta={"report.pdf": 2}),
        ),
        Event(
            author="helper", invocation_id="inv-1",
            content=types.Content(role="user", parts=[types.Part(
                function_response=types.FunctionResponse(
                    id="call-1", name="lookup", response={"rows": [{"a": None}]}))]),
            actions=EventActions(skip_summarization=True, transfer_to_agent="billing",
                                 route=["a", 1, True]),
        ),
        Event(author="helper", invocation_id="inv-1", error_code="E1", error_message="x" * 50,
              turn_complete=True, partial=False, output={"any": [1, "two"]}),
        Event(author="helper", invocation_id="inv-2", node_info={"path": "wf/a@1"},
              content=types.Content(role="model", parts=[types.Part(
                  text="thinking", thought=True, thought_signature=b"sig")])),
    ]  # fmt: skip


def stored(event: Event, metadata: Any = None) -> StoredEvent:
    record = event_record(event)
    return StoredEvent(
        session_id="s", seq=1, author=record["author"], content=record["content"],
        created_at=datetime.now(timezone.utc), state_delta=record["state_delta"],
        invocation_id=record["invocation_id"],
        metadata=record["metadata"] if metadata is None else metadata,
        event_id=record["event_id"],
    )  # fmt: skip


def same(built: pydantic.BaseModel, validated: pydantic.BaseModel) -> None:
    """Equal, and equal all the way down: classes, fields set, every nested value."""
    assert type(built) is type(validated)
    assert built == validated
    assert built.model_fields_set == validated.model_fields_set
    assert list(built.__dict__) == list(validated.__dict__)
    for name, value in validated.__dict__.items():
        mine = built.__dict__[name]
        assert type(mine) is type(value), name
        if isinstance(value, pydantic.BaseModel):
            same(mine, value)
        elif isinstance(value, list):
            for a, b in zip(mine, value, strict=True):
                assert type(a) is type(b)
                if isinstance(b, pydantic.BaseModel):
                    same(a, b)


@pytest.mark.parametrize("index", range(len(corpus())))
def test_tagged_events_rebuild_as_validation_makes_them(index: int) -> None:
    event = corpus()[index]
    record = stored(event)
    assert record.metadata == {WRITTEN_BY: record.metadata[WRITTEN_BY]}  # type: ignore[index]
    rebuilt = to_adk_event(record)
    same(rebuilt, Event.model_validate(record.content))
    assert rebuilt == event
    assert rebuilt.model_dump(mode="json", exclude_none=True) == record.content


def test_untagged_or_other_versions_are_validated() -> None:
    bad = stored(corpus()[0]).content
    bad["timestamp"] = "not a time"
    for metadata in (None, {WRITTEN_BY: "0.1/0.1/1.0"}, {"other": 1}):
        event = StoredEvent(
            session_id="s", seq=1, author="user", content=bad,
            created_at=datetime.now(timezone.utc), metadata=metadata,
        )  # fmt: skip
        with pytest.raises(pydantic.ValidationError):
            to_adk_event(event)


def test_versions_unknown_means_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    from sessiondb import adk

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert adk._versions_tag() is None
    monkeypatch.setattr(adk, "_TAG", None)
    record = event_record(corpus()[0])
    assert record["metadata"] is None
    tagged = stored(corpus()[0], metadata={WRITTEN_BY: None})
    tagged.content["timestamp"] = "not a time"
    with pytest.raises(pydantic.ValidationError):
        to_adk_event(tagged)


class Inner(pydantic.BaseModel):
    n: int = 0


class Checked(pydantic.BaseModel):
    x: int = 0

    @pydantic.field_validator("x")
    @classmethod
    def _double(cls, v: int) -> int:
        return v * 2


class Outer(pydantic.BaseModel):
    inner: Inner | None = None
    items: list[Inner] = []
    raw: bytes | None = None
    when: datetime | None = None
    checked: Checked | None = None
    tags: set[str] | None = None


@pytest.mark.parametrize(
    "data",
    [
        {"inner": {"n": 1}, "items": [{"n": 2}], "tags": ["b", "a"]},
        {"raw": "AAE="},  # bytes: validated
        {"when": "2026-01-02T03:04:05Z"},  # datetimes: validated
        {"checked": {"x": 2}},  # a field validator: validated
        {"inner": {"n": 1, "extra": 2}},  # a key that is no field: validated
        {},
    ],
)
def test_builder_equals_validation_or_validates(data: dict[str, Any]) -> None:
    built = Builder().build(Outer, data)
    same(built, Outer.model_validate(data))
    if "checked" in data:
        assert built.checked.x == 4
    if not data:
        assert built.items == [] and built.items is not Outer.model_fields["items"].default
