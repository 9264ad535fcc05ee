"""Fixtures for tests against a real Kafka broker and a real Redis.

By default one broker and one Redis are started for the whole session on free ports,
with their state under pytest's tmp dir, via `streams.infra.LocalServices`
(``scripts/services.sh``), and stopped at the end. Point at running ones instead with
``VOLMATCH_TEST_KAFKA=host:port`` and/or ``VOLMATCH_TEST_REDIS=redis://host:port``
(tests that restart a service then skip). ``VOLMATCH_CACHE`` is where the broker jars
are cached (default ``~/.cache/volmatch``).
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from streams.infra import Component, LocalServices, default_cache_dir, wait_for_kafka


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: needs the real Kafka and Redis that scripts/services.sh starts",
    )


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str
    local: LocalServices | None
    """The services this session started; None when both were given from outside."""

    def manages(self, component: Component) -> bool:
        return self.local is not None and component in self.local.components


def _free_ports(n: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    ext_kafka = os.environ.get("VOLMATCH_TEST_KAFKA", "").strip()
    ext_redis = os.environ.get("VOLMATCH_TEST_REDIS", "").strip()
    needed: list[Component] = []
    if not ext_kafka:
        needed.append("kafka")
    if not ext_redis:
        needed.append("redis")

    local: LocalServices | None = None
    if needed:
        kafka_port, controller_port, redis_port = _free_ports(3)
        cache = os.environ.get("VOLMATCH_CACHE", "").strip()
        local = LocalServices(
            state_dir=tmp_path_factory.mktemp("services"),
            cache_dir=Path(cache) if cache else default_cache_dir(),
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            redis_port=redis_port,
            components=needed,
        )
        try:
            local.start()
        except BaseException:
            local.stop()
            raise

    bootstrap = ext_kafka or (local.kafka_bootstrap if local else "")
    redis_url = ext_redis or (local.redis_url if local else "")
    try:
        wait_for_kafka(bootstrap, timeout_s=60)
        yield Services(kafka_bootstrap=bootstrap, redis_url=redis_url, local=local)
    finally:
        if local is not None:
            local.stop()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A fresh topic name per test: ``t-{testname}-{uuid8}`` (not created yet)."""
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:120]
    return f"t-{test}-{uuid.uuid4().hex[:8]}"


_db_numbers = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_client(services: Services) -> Iterator[redis.Redis]:
    """A redis-py client on a database (1..15, round robin) flushed before and after."""
    client = redis.Redis.from_url(services.redis_url, db=next(_db_numbers))
    client.flushdb()
    try:
        yield client
    finally:
        try:
            client.flushdb()
        finally:
            client.close()
