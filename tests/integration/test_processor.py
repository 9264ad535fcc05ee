"""The worker's record processor on a real Redis, in batches as the worker runs it: its
read cache and batch prefetch change how often Redis is asked, never what is decided."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matcher.engine import Engine
from matcher.replay import Line, replay
from matcher.state import InMemoryStore
from schemas.codec import dump_output
from schemas.events import RecordSource
from streams.processor import RecordProcessor
from streams.redis_store import RedisStore
from streams.topics import TopicNames
from tests.fakes import DEFAULT_KEYWORDS, KeywordSkillModel, line, need, t, volunteer
from tests.unit.test_rules_property import weeks

pytestmark = pytest.mark.integration
DEV_WEEK = Path(__file__).resolve().parent.parent / "data" / "dev_week.jsonl"


def processor(client: redis.Redis, prefix: str, *, cache_entries: int = 200_000) -> RecordProcessor:
    store = RedisStore(client, prefix, cache_entries=cache_entries)
    return RecordProcessor(store, KeywordSkillModel(DEFAULT_KEYWORDS), TopicNames())


def per_record(proc: RecordProcessor, lines: list[Line], batch: int) -> list[list[str]]:
    """What the worker does with each batch: prepare, process in order, end."""
    out: list[list[str]] = []
    for first in range(0, len(lines), batch):
        chunk = lines[first : first + batch]
        parsed = proc.prepare([ln.raw for ln in chunk])
        for ln, event in zip(chunk, parsed, strict=True):
            source = RecordSource(topic="replay", partition=0, offset=ln.number)
            out.append([o.value.decode() for o in proc.process(ln.raw, None, source, event)])
        proc.end_batch()
    return out


def run_batches(proc: RecordProcessor, lines: list[Line], batch: int) -> list[str]:
    return [o for outputs in per_record(proc, lines, batch) for o in outputs]


def replayed(lines: list[Line]) -> list[str]:
    engine = Engine(InMemoryStore(), KeywordSkillModel(DEFAULT_KEYWORDS))
    return [dump_output(o) for o in replay(lines, engine)]


def dev_lines() -> list[Line]:
    raws = DEV_WEEK.read_bytes().split(b"\n")
    return [Line(i, raw) for i, raw in enumerate(raws) if raw.strip()]


@pytest.mark.parametrize("batch", [1, 7, 200])
def test_batched_processor_decides_as_replay_on_the_dev_week(
    redis_client: redis.Redis, batch: int
) -> None:
    lines = dev_lines()
    expected = replayed(lines)
    assert any('"need.unmatched"' in o and '"expired"' in o for o in expected)
    assert run_batches(processor(redis_client, uuid.uuid4().hex), lines, batch) == expected


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(weeks(), st.integers(min_value=1, max_value=12))
def test_batched_processor_decides_as_replay_on_random_weeks(
    redis_client: redis.Redis, events: list[dict[str, Any]], batch: int
) -> None:
    lines = [Line(i, line(e)) for i, e in enumerate(events)]
    got = run_batches(processor(redis_client, uuid.uuid4().hex), lines, batch)
    assert got == replayed(lines)


def test_a_duplicate_inside_one_batch_has_no_effect(redis_client: redis.Redis) -> None:
    raw_need = line(need("n1", window=(t(0, 9), t(0, 12))))
    lines = [
        Line(0, line(volunteer("v1", windows=[(t(0, 8), t(0, 18))]))),
        Line(1, raw_need),
        Line(2, raw_need),  # the same event again, as another record
    ]
    out = run_batches(processor(redis_client, uuid.uuid4().hex), lines, batch=10)
    assert [json.loads(o)["type"] for o in out] == ["assignment.proposed"]


def test_a_redelivered_batch_publishes_the_same_outputs_again(redis_client: redis.Redis) -> None:
    lines = dev_lines()
    prefix = uuid.uuid4().hex
    first = per_record(processor(redis_client, prefix), lines, batch=9)
    part = slice(len(lines) - 20, len(lines) - 5)
    assert any(first[part])
    # After a restart (a fresh cache), the whole range and a part of it come again.
    assert per_record(processor(redis_client, prefix), lines, batch=9) == first
    assert per_record(processor(redis_client, prefix), lines[part], batch=4) == first[part]


def test_a_stale_cache_costs_a_conflict_never_a_double_booking(redis_client: redis.Redis) -> None:
    prefix = uuid.uuid4().hex
    a, b = processor(redis_client, prefix), processor(redis_client, prefix)
    v1 = Line(0, line(volunteer("v1", windows=[(t(0, 8), t(0, 18))])))
    n1 = Line(1, line(need("n1", window=(t(0, 9), t(0, 10)))))
    n2 = Line(2, line(need("n2", "电路跳闸", window=(t(0, 9), t(0, 10, 30)))))
    run_batches(a, [v1], 1)  # a now holds v1, free all day, in its cache
    [booked] = run_batches(b, [n1], 1)  # b books v1 for 9:00-10:00
    assert json.loads(booked)["volunteer_id"] == "v1"
    [second] = run_batches(a, [n2], 1)  # a's cached v1 is stale: commit refuses, a re-reads
    assert json.loads(second)["type"] == "need.unmatched"
    assert json.loads(second)["reason"] == "no_time_overlap"
    assert [second] == replayed([v1, n1, n2])[1:]


def test_without_a_cache_the_decisions_are_the_same(redis_client: redis.Redis) -> None:
    lines = dev_lines()
    uncached = processor(redis_client, uuid.uuid4().hex, cache_entries=0)
    assert run_batches(uncached, lines, 13) == replayed(lines)
