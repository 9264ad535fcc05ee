"""Bytes in, typed events out, and back: the one place that touches raw records.

``parse_input`` turns a raw record into a typed input event or raises
``InvalidEventError`` with a sentence that names the field. ``redact_raw`` prepares a
raw record for the dead-letter topic, and ``dump_output`` serialises an output event in
one deterministic form so that the same input gives the same bytes.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta, timezone
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from schemas.events import INPUT_MODELS, EventBase, InputEvent, OutputEvent
from schemas.exceptions import InvalidEventError

BEIJING: Final = timezone(timedelta(hours=8))
REDACTED: Final = "[redacted]"

# Model validators cannot attach their error to a sub-field, so they prefix the message
# with "@field:" and the formatter moves it into the location.
_FIELD_PREFIX = re.compile(r"^@(?P<field>[a-z_]+):\s*")
# Best effort for records that are not JSON at all: a contact object still must not leak.
_CONTACT_IN_TEXT = re.compile(r'("contact"\s*:\s*)(\{[^{}]*\}?|"[^"]*"?|[^,}\]]*)')

_TIME_ERRORS: Final = frozenset(
    {"timezone_aware", "datetime_parsing", "datetime_type", "datetime_from_date_parsing"}
)
_TIME_EXAMPLE: Final = "e.g. 2026-12-12T09:00:00+08:00"

TOPIC_OF_TYPE: Final[dict[str, str]] = {
    "volunteer.available": "volunteers",
    "volunteer.withdrawn": "volunteers",
    "need.posted": "needs",
    "need.cancelled": "needs",
    "assignment.accepted": "assignment-responses",
    "assignment.declined": "assignment-responses",
    "assignment.completed": "assignment-responses",
    "assignment.proposed": "assignments",
    "assignment.cancelled": "assignments",
    "need.unmatched": "needs-unmatched",
    "record.rejected": "dead-letters",
}


def decode_text(raw: bytes | str) -> str:
    """The record as text: byte for byte where it is valid UTF-8."""
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="backslashreplace")


def parse_input(raw: bytes | str) -> InputEvent:
    """Validate one raw record against contract v1."""
    text = decode_text(raw)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidEventError(f"record is not valid JSON ({_json_problem(exc)})") from None
    if not isinstance(obj, dict):
        raise InvalidEventError(f"record is a JSON {_json_kind(obj)}, not an object")
    event_type = obj.get("type")
    if event_type is None:
        raise InvalidEventError("field 'type' is missing", field="type")
    if not isinstance(event_type, str) or event_type not in INPUT_MODELS:
        shown = event_type if isinstance(event_type, str) else _json_kind(event_type)
        raise InvalidEventError(
            f"field 'type': unknown event type {shown[:64]!r}; expected one of "
            + ", ".join(sorted(INPUT_MODELS)),
            field="type",
        )
    model = INPUT_MODELS[event_type]
    try:
        event = model.model_validate_json(text)
    except ValidationError as exc:
        field, message = _first_problem(exc)
        raise InvalidEventError(message, field=field) from None
    return _as_input_event(event)


def _as_input_event(event: EventBase) -> InputEvent:
    return event  # type: ignore[return-value]  # INPUT_MODELS holds only InputEvent types


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    loc = [str(part) for part in error["loc"]]
    msg = str(error["msg"]).removeprefix("Value error, ")
    match = _FIELD_PREFIX.match(msg)
    if match:
        loc.append(match.group("field"))
        field = ".".join(loc)
        return field, f"field '{field}' {msg[match.end() :]}"
    field = ".".join(loc) or "record"
    if error["type"] == "missing":
        return field, f"field '{field}' is missing"
    if error["type"] in _TIME_ERRORS:
        return field, f"field '{field}' must be an RFC 3339 time with an offset, {_TIME_EXAMPLE}"
    return field, f"field '{field}': {_lower_first(msg)}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "nested too deeply"


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def redact_raw(raw: bytes | str) -> str:
    """The raw record for dead-letters, with any resident ``contact`` replaced."""
    text = decode_text(raw)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return _CONTACT_IN_TEXT.sub(lambda m: m.group(1) + json.dumps(REDACTED), text)
    if isinstance(obj, dict) and "contact" in obj:
        obj["contact"] = REDACTED
        return json.dumps(obj, ensure_ascii=False)
    return text


def dump_output(event: OutputEvent) -> str:
    """One line of JSON, deterministic: same event, same bytes."""
    return json.dumps(output_dict(event), ensure_ascii=False, separators=(",", ":"))


def output_dict(event: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
    return data


def topic_of(event_type: str) -> str:
    return TOPIC_OF_TYPE[event_type]
