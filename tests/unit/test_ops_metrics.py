"""The worker's metrics and health endpoints, without a broker."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError

from matcher.exceptions import StoreUnavailableError
from streams.lag import PartitionLag
from streams.ops import Metrics, Readiness, ops_app
from streams.processor import Outgoing


def _unavailable() -> StoreUnavailableError:
    try:
        raise StoreUnavailableError("Redis is unavailable") from RedisConnectionError("refused")
    except StoreUnavailableError as exc:
        return exc


def test_counters_name_the_event_type_and_the_redis_error() -> None:
    metrics = Metrics()
    proposed = Outgoing("assignments", b"n1", b"{}", "assignment.proposed")
    unmatched = Outgoing(
        "needs-unmatched", b"n2", b'{"reason": "no_skill_match"}', "need.unmatched"
    )
    metrics.record("needs", "need.posted", [proposed], 0.01)
    metrics.record("needs", "need.posted", [unmatched], 0.02)
    metrics.record("needs", "invalid", [], 0.001)
    metrics.transient(_unavailable())
    metrics.encode_seconds.observe(0.004)
    text = metrics.exposition().decode()
    assert 'volmatch_events_consumed_total{topic="needs",type="need.posted"} 2.0' in text
    assert 'volmatch_events_consumed_total{topic="needs",type="invalid"} 1.0' in text
    assert 'volmatch_needs_unmatched_total{reason="no_skill_match"} 1.0' in text
    assert "volmatch_assignments_proposed_total 1.0" in text
    assert 'volmatch_redis_errors_total{error="ConnectionError"} 1.0' in text
    assert "volmatch_model_encode_seconds_count 1.0" in text


def test_lag_gauges_are_named_as_kafka_exporter_names_them() -> None:
    metrics = Metrics()
    metrics.set_lag([PartitionLag("g", "needs", 0, 5, 12)], {("needs", 0): 3.5})
    text = metrics.exposition().decode()
    assert 'kafka_consumergroup_lag{consumergroup="g",partition="0",topic="needs"} 7.0' in text
    assert (
        'kafka_consumergroup_lag_seconds{consumergroup="g",partition="0",topic="needs"} 3.5' in text
    )


@pytest.mark.asyncio
async def test_metrics_keep_serving_with_the_broker_away_and_readyz_says_why() -> None:
    metrics = Metrics()
    metrics.set_broker_reachable(False)

    def kafka() -> str | None:
        return None if metrics.broker_reachable else "the broker did not answer"

    def model() -> str | None:
        return None if metrics.model_is_loaded else "the skill model is not loaded"

    readiness = Readiness({"kafka": kafka, "model": model, "redis": lambda: None})
    client: TestClient[Any, Any]
    async with TestClient(TestServer(ops_app(metrics, readiness))) as client:
        assert (await client.get("/healthz")).status == 200
        scrape = await client.get("/metrics")
        assert scrape.status == 200
        assert "volmatch_up 0.0" in await scrape.text()
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert set((await ready.json())["problems"]) == {"kafka", "model"}
        metrics.set_broker_reachable(True)
        metrics.set_model_loaded(True)
        assert (await client.get("/readyz")).status == 200
