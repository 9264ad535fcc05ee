"""Small Kafka tools for people and scripts: publish a JSONL file, print a topic."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.codec import decode_text
from streams.topics import TopicNames

KEY_FIELDS = ("need_id", "volunteer_id")


def key_of(obj: object) -> bytes | None:
    """The contract's key: need_id for needs and responses, volunteer_id for volunteers."""
    if not isinstance(obj, dict):
        return None
    for field in KEY_FIELDS:
        value = obj.get(field)
        if isinstance(value, str):
            return value.encode()
    return None


def route(raw: bytes, topics: TopicNames) -> tuple[str, bytes | None]:
    """Topic and key for one input line; lines that are not events go to ``needs``
    unchanged, so the service dead-letters them exactly as it would from upstream."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return topics.needs, None
    event_type = obj.get("type") if isinstance(obj, dict) else None
    topic = topics.for_input_type(event_type) if isinstance(event_type, str) else topics.needs
    return topic, key_of(obj)


def produce_file(path: Path, bootstrap: str, topics: TopicNames) -> dict[str, int]:
    """Publish every non-blank line of ``path`` in order; returns counts per topic."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    counts: dict[str, int] = {}
    try:
        for raw in path.read_bytes().split(b"\n"):
            raw = raw.removesuffix(b"\r")
            if not raw.strip():
                continue
            topic, key = route(raw, topics)
            producer.send(topic, key=key, value=raw)
            counts[topic] = counts.get(topic, 0) + 1
        producer.flush()
    finally:
        producer.close()
    return counts


def tail_topic(
    topic: str, bootstrap: str, *, from_beginning: bool, idle_timeout_s: float | None
) -> Iterator[tuple[int, int, str]]:
    """(partition, offset, value) of each record; stops after ``idle_timeout_s`` of quiet."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else float("inf"),
    )
    try:
        for message in consumer:
            yield message.partition, message.offset, decode_text(message.value or b"")
    finally:
        consumer.close()


def print_event(partition: int, offset: int, value: str, out: IO[str]) -> None:
    try:
        obj = json.loads(value)
    except ValueError:
        out.write(f"[{partition}@{offset}] {value}\n")
        return
    if not isinstance(obj, dict):
        out.write(f"[{partition}@{offset}] {value}\n")
        return
    out.write(f"[{partition}@{offset}] {_summary(obj)}\n")


def _summary(obj: dict[str, object]) -> str:
    kind = obj.get("type", "?")
    if kind == "assignment.proposed":
        slot = obj.get("slot") if isinstance(obj.get("slot"), dict) else {}
        assert isinstance(slot, dict)
        return (
            f"{kind:<21} need={obj.get('need_id')} volunteer={obj.get('volunteer_id')} "
            f"slot={str(slot.get('start', ''))[5:16]}..{str(slot.get('end', ''))[11:16]} "
            f"score={obj.get('score')} type={obj.get('service_type', '-')}"
        )
    if kind == "need.unmatched":
        return (
            f"{kind:<21} need={obj.get('need_id')} missing={obj.get('missing')} "
            f"reason={obj.get('reason')} pending={obj.get('pending')}"
        )
    if kind == "assignment.cancelled":
        return (
            f"{kind:<21} need={obj.get('need_id')} volunteer={obj.get('volunteer_id')} "
            f"reason={obj.get('reason')}"
        )
    if kind == "record.rejected":
        return f"{kind:<21} {obj.get('error')} source={obj.get('source')}"
    return json.dumps(obj, ensure_ascii=False)


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record now in ``topic`` (all partitions, up to their end offsets at the start),
    as kafka-python ``ConsumerRecord``s. Raises TimeoutError if the end is not reached."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = topic_partitions(consumer, [topic])
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout_s}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def topic_partitions(consumer: KafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, in order (a topic not there yet has none)."""
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]


def partitions_of(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """``topic_partitions`` with a consumer of its own."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        return topic_partitions(consumer, topics)
    finally:
        consumer.close()
