from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import InvalidEventError, NeedPosted, VolunteerAvailable, parse_input, redact_raw
from schemas.jsonschema import export_schemas
from tests.fakes import line, need, t, volunteer


def test_valid_need_gets_contract_defaults() -> None:
    event = parse_input(line(need("n1")))
    assert isinstance(event, NeedPosted)
    assert (event.duration_minutes, event.headcount, event.urgency, event.source) == (
        60,
        1,
        "normal",
        "",
    )


def test_volunteer_serves_home_community_by_default() -> None:
    event = parse_input(line(volunteer("v1", windows=[(t(0, 9), t(0, 12))])))
    assert isinstance(event, VolunteerAvailable)
    assert event.served == ("c1",)
    assert event.kind == "resident"
    assert event.max_hours_per_week == 4


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(duration_minutes="60"), "duration_minutes"),
        (lambda d: d.update(duration_minutes=240), "duration_minutes"),
        (lambda d: d.update(headcount=0), "headcount"),
        (lambda d: d.update(headcount=21), "headcount"),
        (lambda d: d.update(urgency="urgent"), "urgency"),
        (lambda d: d.pop("need_id"), "need_id"),
        (lambda d: d.pop("event_id"), "event_id"),
        (lambda d: d.update(event_id="x" * 129), "event_id"),
        (lambda d: d.update(text=""), "text"),
        (lambda d: d["window"].update(start=t(0, 13)), "window.end"),
        (lambda d: d["window"].update(end="2026-12-07T12:00:00"), "window.end"),
        (lambda d: d.update(occurred_at=1765000000), "occurred_at"),
    ],
)
def test_invalid_need_names_the_field(mutate: object, field: str) -> None:
    data = need("n1")
    mutate(data)  # type: ignore[operator]
    with pytest.raises(InvalidEventError) as info:
        parse_input(line(data))
    assert info.value.field == field
    assert f"'{field}'" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"not json", "not valid JSON"),
        (b"[1,2]", "array"),
        (b'{"type": "x.y"}', "unknown"),
        (b'{"event_id": "e"}', "'type' is missing"),
    ],
)
def test_unusable_records_say_why(raw: bytes, words: str) -> None:
    with pytest.raises(InvalidEventError, match=words):
        parse_input(raw)


def test_numbers_are_not_coerced_for_volunteers() -> None:
    data = volunteer("v1", max_hours_per_week="3")
    with pytest.raises(InvalidEventError, match="max_hours_per_week"):
        parse_input(line(data))


def test_redaction_replaces_contact_and_keeps_other_bytes() -> None:
    data = need("n1", contact={"name": "王阿姨", "phone": "13800001234"})
    data.pop("text")
    redacted = redact_raw(line(data))
    assert "13800001234" not in redacted
    assert "王阿姨" not in redacted
    assert json.loads(redacted)["contact"] == "[redacted]"
    plain = line(need("n2"))
    assert redact_raw(plain) == plain.decode()


def test_redaction_of_broken_json_still_hides_contact() -> None:
    raw = b'{"type":"need.posted","contact":{"phone":"13800001234"},"text":'
    assert "13800001234" not in redact_raw(raw)


def test_contact_is_not_in_repr() -> None:
    event = parse_input(line(need("n1", contact={"phone": "13800001234"})))
    assert "13800001234" not in repr(event)


def test_export_writes_one_schema_per_type(tmp_path: Path) -> None:
    written = export_schemas(tmp_path)
    names = {p.name for p in written}
    assert "need.posted.schema.json" in names
    assert "record.rejected.schema.json" in names
    schema = json.loads((tmp_path / "need.posted.schema.json").read_text())
    assert "need_id" in schema["required"]
