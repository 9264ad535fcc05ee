"""The faust worker: consumes the input topics, runs each record through the
``RecordProcessor`` and publishes its outputs before the record counts as done.

faust acknowledges a record when the agent's loop body finishes, even if it raised, so
nothing may escape the body: transient trouble (Redis away) is retried in place, and any
other failure becomes a dead letter. ``concurrency=1``: faust can commit past a record
still in flight when an agent runs several copies; scale with partitions and workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from matcher.settings import KafkaSettings
from schemas.events import RecordSource
from schemas.exceptions import InvalidEventError
from streams.processor import Outgoing, Parsed, RecordProcessor, parse
from streams.topics import TopicNames

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


@dataclass
class WorkerHooks:
    """Callbacks for metrics and tests; each gets the outputs of one record."""

    on_record: Callable[[str, str, list[Outgoing], float], None] | None = None
    on_transient: Callable[[BaseException], None] | None = None
    on_prepared: Callable[[float], None] | None = None


def build_app(
    kafka: KafkaSettings,
    topics: TopicNames,
    processor: RecordProcessor,
    *,
    datadir: Path,
    hooks: WorkerHooks | None = None,
    app_id: str | None = None,
) -> faust.App:
    app = faust.App(
        app_id or kafka.group_id,
        broker=f"kafka://{kafka.bootstrap_servers}",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=kafka.partitions_needs,
        topic_replication_factor=1,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=kafka.commit_interval_s,
        # A worker killed without leaving the group holds its partitions until the session
        # times out; faust's 60 s default leaves needs waiting a minute after a crash.
        broker_session_timeout=kafka.session_timeout_s,
        broker_heartbeat_interval=min(3.0, kafka.session_timeout_s / 3),
        producer_acks=-1,
    )
    source = app.topic(*topics.inputs, key_serializer="raw", value_serializer="raw")
    worker = _Worker(processor, app, hooks or WorkerHooks())

    @app.agent(source, concurrency=1)
    async def match(stream: Any) -> None:  # faust.Stream: StreamT lacks take_events
        # Records come in small batches: their texts are placed in one call and the
        # broker's acks for all their outputs are awaited once. take_events acks the
        # batch's records only after this body has finished with them.
        async for events in stream.take_events(kafka.batch_size, within=kafka.batch_within_s):
            await worker.handle_batch(events)

    return app


_Item = tuple[bytes | None, bytes | None, RecordSource, Parsed]


class _Worker:
    def __init__(self, processor: RecordProcessor, app: faust.App, hooks: WorkerHooks) -> None:
        self._processor = processor
        self._app = app
        self._hooks = hooks

    async def handle_batch(self, events: Sequence[Any]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        records = [_record_of(event) for event in events]
        parsed = await self._prepare([raw for raw, _, _ in records])
        if self._hooks.on_prepared is not None:
            self._hooks.on_prepared(loop.time() - started)
        items = [(*record, event) for record, event in zip(records, parsed, strict=True)]
        results = await self._process_all(items)
        self._processor.end_batch()
        pending: list[Awaitable[Any]] = []
        for outgoing in results:
            pending += await self._send(outgoing)
        # Only once the broker has acknowledged every output may faust commit the offsets.
        for future in pending:
            await future
        if self._hooks.on_record is not None:
            elapsed = loop.time() - started
            for (_, _, source, event), outgoing in zip(items, results, strict=True):
                kind: str = "invalid" if isinstance(event, InvalidEventError) else event.type
                self._hooks.on_record(source.topic, kind, outgoing, elapsed)

    async def _prepare(self, raws: list[bytes | None]) -> list[Parsed]:
        try:
            return await asyncio.to_thread(self._processor.prepare, raws)
        except Exception:  # placement is a warm-up: without it each record places itself
            log.exception("batch preparation failed; handling the records one by one")
            return [parse(raw) for raw in raws]

    async def _process_all(self, items: list[_Item]) -> list[list[Outgoing]]:
        """Every record of the batch in one worker thread, in order. Transient trouble
        (Redis away) stops the run at that record; it is retried from there."""
        results: list[list[Outgoing]] = []
        delay = RETRY_FIRST_S
        while len(results) < len(items):
            done, trouble = await asyncio.to_thread(self._run, items[len(results) :])
            results += done
            if trouble is not None:
                if self._hooks.on_transient is not None:
                    self._hooks.on_transient(trouble)
                source = items[len(results)][2]
                log.warning(
                    "transient failure at %s, retrying in %.1fs: %s", _where(source), delay, trouble
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        return results

    def _run(self, items: list[_Item]) -> tuple[list[list[Outgoing]], BaseException | None]:
        done: list[list[Outgoing]] = []
        for raw, key, source, parsed in items:
            try:
                done.append(self._processor.process(raw, key, source, parsed))
            except Exception as exc:  # nothing may escape the agent's loop
                if getattr(exc, "transient", False):
                    return done, exc
                log.exception("unexpected failure at %s; dead-lettering the record", _where(source))
                error = f"internal error while handling the record ({type(exc).__name__})"
                done.append([self._processor.dead_letter(error, raw or b"", key, source)])
        return done, None

    async def _send(self, outgoing: list[Outgoing]) -> list[Awaitable[Any]]:
        # Straight to the app's producer: values are bytes already, and faust's Topic.send
        # (serializers, FutureMessage, callbacks) cost ~0.7 ms per output here.
        producer = self._app.producer
        return [
            await producer.send(item.topic, item.key, item.value, None, None, None)
            for item in outgoing
        ]


def _record_of(event: Any) -> tuple[bytes | None, bytes | None, RecordSource]:
    message = event.message
    source = RecordSource(topic=message.topic, partition=message.partition, offset=message.offset)
    raw = event.value if isinstance(event.value, bytes) else None
    return raw, message.key, source


def _where(source: RecordSource) -> str:
    return f"{source.topic}[{source.partition}]@{source.offset}"
