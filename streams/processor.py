"""One Kafka record in, the records to publish out: the live path around the Engine.

Sync and free of Kafka: the faust agent calls ``process`` (in a worker thread) and
publishes what it returns. Exactly-once in effect:
- a record that is not a valid event becomes a dead letter;
- a record whose event was committed before (a redelivery after a crash) gives back the
  outputs stored with it, never a second decision;
- otherwise the engine decides inside a Redis unit of work that commits state, the
  event's seen mark and its outputs in one atomic step, re-running on a conflict with
  another worker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from matcher.engine import Engine
from matcher.exceptions import StoreUnavailableError, UnusableEventError
from matcher.replay import reject
from matcher.skills import SkillModel
from matcher.timeslots import round_up
from schemas.codec import dump_output, parse_input
from schemas.events import InputEvent, NeedPosted, OutputEvent, RecordSource, VolunteerAvailable
from schemas.exceptions import InvalidEventError
from streams.exceptions import ConflictRetriesExhaustedError
from streams.redis_store import EventAlreadyCommittedError, RedisStore, SwitchableStore
from streams.topics import TopicNames

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    event_type: str


class RecordProcessor:
    def __init__(
        self,
        store: RedisStore,
        skills: SkillModel,
        topics: TopicNames,
        *,
        max_attempts: int = 50,
    ) -> None:
        self._store = store
        self._switch = SwitchableStore()
        self._engine = Engine(self._switch, skills)
        self._topics = topics
        self._max_attempts = max_attempts

    @property
    def matcher_version(self) -> str:
        return self._engine.version

    def prepare(self, raws: Sequence[bytes | None]) -> list[Parsed]:
        """Parse many records and place their texts in one batch before they are
        processed one by one; hand each result to ``process`` so nothing parses twice."""
        parsed = [parse(raw) for raw in raws]
        events = [p for p in parsed if not isinstance(p, InvalidEventError)]
        self._engine.prepare(
            [e.text for e in events if isinstance(e, NeedPosted)],
            [e.skills for e in events if isinstance(e, VolunteerAvailable)],
        )
        self._prefetch(events)
        return parsed

    def _prefetch(self, events: Sequence[InputEvent]) -> None:
        """One round trip for the batch's outboxes and expiry candidates; when Redis is
        away, each record reads its own later (with the worker's retries)."""
        ids = list(dict.fromkeys(e.event_id for e in events))
        # The engine's clock for an event is its occurred_at rounded up to the slot grid.
        latest = max((round_up(e.occurred_at) for e in events), default=None)
        need_ids = list(dict.fromkeys(n for e in events if (n := getattr(e, "need_id", None))))
        volunteer_ids = list(
            dict.fromkeys(v for e in events if (v := getattr(e, "volunteer_id", None)))
        )
        self._store.end_batch()  # nothing of the last batch's prefetch may linger
        try:
            self._store.prefetch(ids, latest, need_ids=need_ids, volunteer_ids=volunteer_ids)
        except StoreUnavailableError as exc:
            self._store.end_batch()
            log.warning("batch prefetch skipped: %s", exc)

    def end_batch(self) -> None:
        self._store.end_batch()

    def process(
        self,
        raw: bytes | None,
        key: bytes | None,
        source: RecordSource,
        parsed: Parsed | None = None,
    ) -> list[Outgoing]:
        """Raises only transient errors (Redis away): the caller retries the record."""
        data = raw or b""
        event = parse(raw) if parsed is None else parsed
        if isinstance(event, InvalidEventError):
            log.info("rejected %s: %s", _where(source), event.message)
            return [self.dead_letter(event.message, data, key, source)]
        stored = self._store.outbox(event.event_id)
        if stored is not None:
            return self._replayed(event, stored, source)
        return self._decide(event, data, key, source)

    def _replayed(
        self, event: InputEvent, stored: list[str], source: RecordSource
    ) -> list[Outgoing]:
        """The same record again (a crash came between commit and offset commit): publish
        its outputs again, same event ids. Another record with a used event_id: nothing."""
        origin, lines = stored[0], stored[1:]
        if origin != _origin(source):
            log.info("duplicate event_id %s at %s: no effect", event.event_id, _where(source))
            return []
        log.info(
            "redelivered %s at %s: republishing %d outputs",
            event.event_id,
            _where(source),
            len(lines),
        )
        return [self._from_stored(line) for line in lines]

    def _decide(
        self, event: InputEvent, raw: bytes, key: bytes | None, source: RecordSource
    ) -> list[Outgoing]:
        for _ in range(self._max_attempts):
            unit = self._store.begin(event.event_id)
            self._switch.use(unit)
            try:
                outputs = self._engine.handle(event)
            except UnusableEventError as exc:
                outputs = [
                    reject(
                        exc.message,
                        raw,
                        topic=source.topic,
                        partition=source.partition,
                        offset=source.offset,
                    )
                ]
            finally:
                self._switch.use(None)
            lines = [dump_output(o) for o in outputs]
            try:
                # The outbox's first entry names the record that decided, so a redelivery
                # of it can be told from a duplicate event sent as another record.
                if unit.commit([_origin(source), *lines]):
                    return [
                        self._outgoing(o, line, key) for o, line in zip(outputs, lines, strict=True)
                    ]
            except EventAlreadyCommittedError:
                return self._replayed(event, self._store.outbox(event.event_id) or [""], source)
        raise ConflictRetriesExhaustedError(
            f"event {event.event_id!r} conflicted {self._max_attempts} times"
        )

    def dead_letter(
        self, error: str, raw: bytes, key: bytes | None, source: RecordSource
    ) -> Outgoing:
        record = reject(
            error, raw, topic=source.topic, partition=source.partition, offset=source.offset
        )
        return self._outgoing(record, dump_output(record), key)

    def _outgoing(self, event: OutputEvent, line: str, key: bytes | None) -> Outgoing:
        topic = self._topics.for_output_type(event.type)
        need_id = getattr(event, "need_id", None)
        out_key = need_id.encode() if isinstance(need_id, str) else key
        return Outgoing(topic, out_key, line.encode(), event.type)

    def _from_stored(self, line: str) -> Outgoing:
        data = json.loads(line)
        event_type = str(data.get("type", "record.rejected"))
        need_id = data.get("need_id")
        key = need_id.encode() if isinstance(need_id, str) else None
        return Outgoing(self._topics.for_output_type(event_type), key, line.encode(), event_type)


Parsed = InputEvent | InvalidEventError


def parse(raw: bytes | None) -> Parsed:
    """The record's event, or why it is not one (the error is a value, not raised)."""
    try:
        return parse_input(raw or b"")
    except InvalidEventError as exc:
        return exc


def _origin(source: RecordSource) -> str:
    return json.dumps([source.topic, source.partition, source.offset])


def _where(source: RecordSource) -> str:
    return f"{source.topic}[{source.partition}]@{source.offset}"
