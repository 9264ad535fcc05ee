"""The real infrastructure works: Kafka through kafka-python, aiokafka and faust, and
Redis with AOF persistence across a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import faust
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer

from streams.infra import create_topics

if TYPE_CHECKING:
    from conftest import Services

pytestmark = pytest.mark.integration

N = 10
TIMEOUT_S = 30.0


def _records() -> dict[bytes, bytes]:
    return {f"key-{i}".encode(): f"value-{i}".encode() for i in range(N)}


def _consume_sync(bootstrap: str, topic: str, n: int) -> list[tuple[bytes, bytes, int]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    got: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(got) < n and time.monotonic() < deadline:
            got.extend((m.key, m.value, m.partition) for m in consumer)
    finally:
        consumer.close()
    return got


async def _consume_async(bootstrap: str, topic: str, n: int) -> list[tuple[bytes, bytes, int]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[bytes, bytes, int]] = []
    try:
        async with asyncio.timeout(TIMEOUT_S):
            async for msg in consumer:
                assert msg.key is not None
                assert msg.value is not None
                got.append((msg.key, msg.value, msg.partition))
                if len(got) >= n:
                    break
    finally:
        await consumer.stop()
    return got


def _check(got: list[tuple[bytes, bytes, int]], expected: dict[bytes, bytes]) -> None:
    assert {k: v for k, v, _ in got} == expected
    assert len(got) == len(expected)
    partition_of: dict[bytes, int] = {}
    for key, _, partition in got:
        assert partition_of.setdefault(key, partition) == partition


def test_kafka_python_roundtrip(services: Services, topic_name: str) -> None:
    assert create_topics(services.kafka_bootstrap, {topic_name: 3}) == [topic_name]
    # idempotent: a second call creates nothing and does not raise
    assert create_topics(services.kafka_bootstrap, {topic_name: 3}) == []

    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    try:
        for key, value in _records().items():
            producer.send(topic_name, key=key, value=value)
        producer.flush(timeout=TIMEOUT_S)
    finally:
        producer.close()

    got = _consume_sync(services.kafka_bootstrap, topic_name, N)
    _check(got, _records())
    assert len({p for _, _, p in got}) > 1, "10 keys over 3 partitions should spread"


@pytest.mark.asyncio
async def test_aiokafka_roundtrip(services: Services, topic_name: str) -> None:
    create_topics(services.kafka_bootstrap, {topic_name: 3})
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in _records().items():
            await producer.send_and_wait(topic_name, key=key, value=value)
    finally:
        await producer.stop()

    got = await _consume_async(services.kafka_bootstrap, topic_name, N)
    _check(got, _records())


@pytest.mark.asyncio
async def test_faust_agent_forwards(services: Services, topic_name: str, tmp_path: Path) -> None:
    """A faust 0.15 app, built inside the running loop, consumes one topic and produces
    to another. faust never creates source/sink topics (only internal ones), and the
    broker does not auto-create, so both are created up front."""
    src_name, dst_name = f"{topic_name}-in", f"{topic_name}-out"
    create_topics(services.kafka_bootstrap, {src_name: 2, dst_name: 2})

    app = faust.App(
        f"itest-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{services.kafka_bootstrap}",
        store="memory://",
        datadir=str(tmp_path / "faust-data"),
        web_enabled=False,
        topic_partitions=2,
        topic_replication_factor=1,
        topic_disable_leader=True,  # no __assignor-__leader topic to create
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
    )
    src = app.topic(src_name, key_serializer="raw", value_serializer="raw")
    dst = app.topic(dst_name, key_serializer="raw", value_serializer="raw")

    @app.agent(src)
    async def forward(stream: faust.StreamT[bytes]) -> None:
        async for key, value in stream.items():
            await dst.send(key=key, value=value.upper())

    app.finalize()
    await asyncio.wait_for(app.start(), timeout=TIMEOUT_S)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not app.consumer.assignment():
                await asyncio.sleep(0.2)
        assert {tp.topic for tp in app.consumer.assignment()} == {src_name}

        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap)
        await producer.start()
        try:
            for key, value in _records().items():
                await producer.send_and_wait(src_name, key=key, value=value)
        finally:
            await producer.stop()

        got = await _consume_async(services.kafka_bootstrap, dst_name, N)
    finally:
        await asyncio.wait_for(app.stop(), timeout=TIMEOUT_S)

    _check(got, {k: v.upper() for k, v in _records().items()})


def test_redis_set_get_survives_restart(services: Services, redis_client: redis.Redis) -> None:
    redis_client.set("greeting", "你好 volunteer")
    assert redis_client.get("greeting") == "你好 volunteer".encode()
    if not services.manages("redis"):
        pytest.skip("Redis given through VOLMATCH_TEST_REDIS: not restarting it")
    assert services.local is not None
    services.local.restart_redis()
    # the same client reconnects; the key came back from the append-only file
    assert redis_client.get("greeting") == "你好 volunteer".encode()


def test_kafka_restart_keeps_topics_and_records(services: Services, topic_name: str) -> None:
    if not services.manages("kafka"):
        pytest.skip("Kafka given through VOLMATCH_TEST_KAFKA: not restarting it")
    assert services.local is not None
    create_topics(services.kafka_bootstrap, {topic_name: 1})
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    try:
        producer.send(topic_name, key=b"k", value=b"before-restart")
        producer.flush(timeout=TIMEOUT_S)
    finally:
        producer.close()

    services.local.restart_kafka()

    assert create_topics(services.kafka_bootstrap, {topic_name: 1}) == []
    got = _consume_sync(services.kafka_bootstrap, topic_name, 1)
    assert [(k, v) for k, v, _ in got] == [(b"k", b"before-restart")]
