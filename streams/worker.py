"""Composition root of the live service: settings in, a running faust worker out."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

import redis
from aiohttp import web

from matcher.settings import Settings
from streams.app import WorkerHooks, build_app
from streams.board import Board
from streams.coordinator import (
    BoardFeed,
    CoordinatorDesk,
    KafkaResponsePublisher,
    SystemClock,
    Tokens,
    add_coordinator_routes,
)
from streams.infra import create_topics, wait_for_kafka
from streams.lag import consumer_lag, oldest_unconsumed_age_s, partition_entries, track_statuses
from streams.lagstatus import StatusTracker
from streams.ops import Metrics, Readiness, ops_app, serve
from streams.processor import RecordProcessor
from streams.redis_store import RedisStore
from streams.topics import TopicNames

log = logging.getLogger(__name__)


def topics_of(settings: Settings) -> TopicNames:
    return TopicNames(settings.kafka.topic_prefix)


def ensure_topics(settings: Settings) -> list[str]:
    """Create the contract's topics with explicit partition counts (the broker does not
    auto-create, and faust only creates its own internal topics)."""
    kafka = settings.kafka
    wanted = topics_of(settings).partitions(
        needs=kafka.partitions_needs,
        volunteers=kafka.partitions_volunteers,
        other=kafka.partitions_other,
    )
    return create_topics(kafka.bootstrap_servers, wanted)


def build_processor(settings: Settings, client: redis.Redis) -> RecordProcessor:
    from models.factory import build_skill_model

    store = RedisStore(
        client, settings.redis.key_prefix, cache_entries=settings.redis.cache_entries
    )
    skills = build_skill_model(settings.model)
    return RecordProcessor(store, skills, topics_of(settings))


READY_MARKER = "volmatch worker ready"


def _ready_worker_class() -> type:
    import faust

    class ReadyWorker(faust.Worker):
        """Says so on stderr once partitions are assigned and recovery is done, whatever
        the log level, so scripts and supervisors can wait for it."""

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            print(READY_MARKER, file=sys.stderr, flush=True)

    return ReadyWorker


def run_worker(settings: Settings, *, datadir: Path) -> None:
    """Run until SIGTERM/SIGINT; mode's worker stops the app gracefully on either."""
    wait_for_kafka(settings.kafka.bootstrap_servers, 60.0)
    created = ensure_topics(settings)
    if created:
        log.info("created topics %s", ", ".join(created))
    client = redis.Redis.from_url(settings.redis.url)
    processor = build_processor(settings, client)
    log.info("matcher %s ready", processor.matcher_version)
    metrics = Metrics()
    metrics.set_model_loaded(True)
    hooks = WorkerHooks(
        on_record=metrics.record,
        on_transient=metrics.transient,
        on_prepared=metrics.encode_seconds.observe,
    )
    app = build_app(settings.kafka, topics_of(settings), processor, datadir=datadir, hooks=hooks)
    if settings.ops.port:
        _add_ops(app, settings, metrics, client)
    worker = _ready_worker_class()(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()


def _add_ops(app: Any, settings: Settings, metrics: Metrics, client: redis.Redis) -> None:
    """Metrics and health endpoints, and a periodic lag query for the lag gauges."""
    bootstrap, group = settings.kafka.bootstrap_servers, settings.kafka.group_id
    inputs = topics_of(settings).inputs

    def redis_problem() -> str | None:
        return None if client.ping() else "Redis did not answer PING"

    def kafka_problem() -> str | None:
        if metrics.broker_reachable:
            return None
        return "the broker did not answer the last lag query"

    def model_problem() -> str | None:
        return None if metrics.model_is_loaded else "the skill model is not loaded"

    readiness = Readiness({"redis": redis_problem, "kafka": kafka_problem, "model": model_problem})
    web_app = ops_app(metrics, readiness)
    board = _add_coordinator(app, web_app, settings) if settings.coordinator.enabled else None
    tracker = StatusTracker()

    @app.task  # type: ignore[untyped-decorator]
    async def start_ops() -> None:
        try:
            await serve(web_app, settings.ops.host, settings.ops.port)
        except OSError as exc:  # a taken port must not take the matching down with it
            log.error("ops endpoints not started on port %d: %s", settings.ops.port, exc)

    @app.timer(interval=settings.ops.lag_interval_s)  # type: ignore[untyped-decorator]
    async def refresh_lag() -> None:
        try:
            rows = await asyncio.to_thread(consumer_lag, bootstrap, group, inputs)
            now_ms = int(time.time() * 1000)
            ages = await asyncio.to_thread(oldest_unconsumed_age_s, bootstrap, rows, now_ms)
        except Exception as exc:  # the broker being away is what this gauge reports
            log.warning("lag query failed: %s", exc)
            metrics.set_broker_reachable(False)
            return
        metrics.set_lag(rows, ages)
        metrics.set_broker_reachable(True)
        if board is not None:
            statuses = track_statuses(tracker, rows, time.monotonic())
            board.set_lag(partition_entries(rows, ages, statuses, digits=1))


def _add_coordinator(app: Any, web_app: web.Application, settings: Settings) -> Board:
    """The coordinator page on the ops port: a board fed from the topics, and a desk that
    publishes coordinators' answers."""
    topics = topics_of(settings)
    board = Board(
        max_needs=settings.coordinator.max_needs,
        recent_assignments=settings.coordinator.recent_assignments,
    )
    publisher = KafkaResponsePublisher(settings.kafka.bootstrap_servers)
    clock = SystemClock()
    desk = CoordinatorDesk(board, publisher, topics, clock)
    add_coordinator_routes(web_app, board, desk, Tokens(settings.coordinator), clock)
    feed = BoardFeed(settings.kafka.bootstrap_servers, topics, board)

    @app.task  # type: ignore[untyped-decorator]
    async def follow_topics_for_the_board() -> None:
        await feed.run_forever()

    log.info("coordinator page on http://%s:%d/coordinator", settings.ops.host, settings.ops.port)
    return board
