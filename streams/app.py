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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from matcher.settings import KafkaSettings
from schemas.events import RecordSource
from streams.processor import Outgoing, RecordProcessor
from streams.topics import TopicNames

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


@dataclass
class WorkerHooks:
    """Callbacks for metrics and tests; each gets the outputs of one record."""

    on_record: Callable[[str, list[Outgoing], float], None] | None = None
    on_transient: Callable[[], None] | None = None


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
    sinks = {
        name: app.topic(name, key_serializer="raw", value_serializer="raw")
        for name in topics.outputs
    }
    worker = _Worker(processor, sinks, hooks or WorkerHooks())

    @app.agent(source, concurrency=1)
    async def match(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await worker.handle(event)

    return app


class _Worker:
    def __init__(
        self, processor: RecordProcessor, sinks: dict[str, Any], hooks: WorkerHooks
    ) -> None:
        self._processor = processor
        self._sinks = sinks
        self._hooks = hooks

    async def handle(self, event: Any) -> None:
        message = event.message
        source = RecordSource(
            topic=message.topic, partition=message.partition, offset=message.offset
        )
        raw = event.value if isinstance(event.value, bytes) else None
        started = asyncio.get_running_loop().time()
        outgoing = await self._process(raw, message.key, source)
        await self._publish(outgoing)
        if self._hooks.on_record is not None:
            elapsed = asyncio.get_running_loop().time() - started
            self._hooks.on_record(message.topic, outgoing, elapsed)

    async def _process(
        self, raw: bytes | None, key: bytes | None, source: RecordSource
    ) -> list[Outgoing]:
        delay = RETRY_FIRST_S
        while True:
            try:
                return await asyncio.to_thread(self._processor.process, raw, key, source)
            except Exception as exc:  # nothing may escape the agent's loop
                if getattr(exc, "transient", False):
                    if self._hooks.on_transient is not None:
                        self._hooks.on_transient()
                    log.warning(
                        "transient failure at %s, retrying in %.1fs: %s", _where(source), delay, exc
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                log.exception("unexpected failure at %s; dead-lettering the record", _where(source))
                error = f"internal error while handling the record ({type(exc).__name__})"
                return [self._processor.dead_letter(error, raw or b"", key, source)]

    async def _publish(self, outgoing: list[Outgoing]) -> None:
        pending: list[Awaitable[Any]] = []
        for item in outgoing:
            pending.append(await self._sinks[item.topic].send(key=item.key, value=item.value))
        # Wait for the broker's acks: only then may faust commit the input's offset.
        for future in pending:
            await future


def _where(source: RecordSource) -> str:
    return f"{source.topic}[{source.partition}]@{source.offset}"
