"""Composition root of the live service: settings in, a running faust worker out."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import redis

from matcher.settings import Settings
from streams.app import WorkerHooks, build_app
from streams.infra import create_topics, wait_for_kafka
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


def build_processor(settings: Settings) -> RecordProcessor:
    from models.factory import build_skill_model

    client = redis.Redis.from_url(settings.redis.url)
    store = RedisStore(client, settings.redis.key_prefix)
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


def run_worker(settings: Settings, *, datadir: Path, hooks: WorkerHooks | None = None) -> None:
    """Run until SIGTERM/SIGINT; mode's worker stops the app gracefully on either."""
    wait_for_kafka(settings.kafka.bootstrap_servers, 60.0)
    created = ensure_topics(settings)
    if created:
        log.info("created topics %s", ", ".join(created))
    processor = build_processor(settings)
    log.info("matcher %s ready", processor.matcher_version)
    app = build_app(settings.kafka, topics_of(settings), processor, datadir=datadir, hooks=hooks)
    worker = _ready_worker_class()(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
