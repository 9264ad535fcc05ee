"""Replay: the service's own decision logic over a file instead of Kafka.

Every input line gives the output events the live service would publish for it, in
order; a line that cannot be used gives one ``record.rejected``. Same input, same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from matcher.engine import Engine
from matcher.exceptions import UnusableEventError
from schemas.codec import parse_input, redact_raw
from schemas.events import (
    InputEvent,
    NeedPosted,
    OutputEvent,
    RecordRejected,
    RecordSource,
    VolunteerAvailable,
)
from schemas.exceptions import InvalidEventError

REPLAY_TOPIC = "replay"
DEFAULT_CHUNK = 2_000


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    raw: bytes


def reject(
    error: str, raw: bytes | str, *, topic: str, partition: int, offset: int
) -> RecordRejected:
    return RecordRejected(
        error=error,
        source=RecordSource(topic=topic, partition=partition, offset=offset),
        raw=redact_raw(raw),
    )


def split_lines(data: bytes) -> Iterator[Line]:
    """Numbered lines (0-based, blank ones counted), without their line break."""
    for number, raw in enumerate(data.split(b"\n")):
        yield Line(number, raw.removesuffix(b"\r"))


def handle_record(
    engine: Engine, raw: bytes, *, topic: str, partition: int, offset: int
) -> tuple[InputEvent | None, list[OutputEvent]]:
    """Parse and apply one record; bad input becomes a dead letter, never an exception."""
    try:
        event = parse_input(raw)
    except InvalidEventError as exc:
        return None, [reject(exc.message, raw, topic=topic, partition=partition, offset=offset)]
    return event, apply_event(engine, event, raw, topic=topic, partition=partition, offset=offset)


def apply_event(
    engine: Engine, event: InputEvent, raw: bytes, *, topic: str, partition: int, offset: int
) -> list[OutputEvent]:
    try:
        return engine.handle(event)
    except UnusableEventError as exc:
        return [reject(exc.message, raw, topic=topic, partition=partition, offset=offset)]


def replay(
    lines: Iterable[Line], engine: Engine, *, chunk: int = DEFAULT_CHUNK
) -> Iterator[OutputEvent]:
    """Outputs for every line, in order. Lines are parsed a chunk at a time so the skill
    model can place that chunk's texts in one batch before the events are applied."""
    batch: list[Line] = []
    for line in lines:
        if not line.raw.strip():
            continue
        batch.append(line)
        if len(batch) >= chunk:
            yield from _replay_chunk(batch, engine)
            batch = []
    if batch:
        yield from _replay_chunk(batch, engine)


def _replay_chunk(batch: list[Line], engine: Engine) -> Iterator[OutputEvent]:
    parsed: list[tuple[Line, InputEvent | InvalidEventError]] = []
    for line in batch:
        try:
            parsed.append((line, parse_input(line.raw)))
        except InvalidEventError as exc:
            parsed.append((line, exc))
    engine.prepare(
        [e.text for _, e in parsed if isinstance(e, NeedPosted)],
        [e.skills for _, e in parsed if isinstance(e, VolunteerAvailable)],
    )
    for line, item in parsed:
        if isinstance(item, InvalidEventError):
            yield reject(
                item.message, line.raw, topic=REPLAY_TOPIC, partition=0, offset=line.number
            )
        else:
            yield from apply_event(
                engine, item, line.raw, topic=REPLAY_TOPIC, partition=0, offset=line.number
            )
