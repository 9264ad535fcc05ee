"""Consumer lag, the way Kafka operators read it: committed offset, log-end offset, lag."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TypedDict

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from streams.io import topic_partitions
from streams.lagstatus import Sample, Status, StatusTracker


@dataclass(frozen=True, order=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    log_end: int

    @property
    def lag(self) -> int:
        return self.log_end - (self.committed or 0)


def consumer_lag(bootstrap: str, group: str, topics: Sequence[str]) -> list[PartitionLag]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="volmatch-lag")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        committed = {
            tp: meta.offset
            for tp, meta in admin.list_consumer_group_offsets(group).items()
            if meta.offset >= 0
        }
        partitions = topic_partitions(consumer, topics)
        ends = consumer.end_offsets(partitions) if partitions else {}
    finally:
        consumer.close()
        admin.close()
    return sorted(
        PartitionLag(group, tp.topic, tp.partition, committed.get(tp), ends[tp])
        for tp in partitions
    )


def print_lag(
    rows: Sequence[PartitionLag],
    out: IO[str],
    statuses: Mapping[tuple[str, int], Status] | None = None,
) -> None:
    """The columns of kafka-consumer-groups.sh --describe, so operators read it at once,
    plus a Burrow-style status when a window of samples is known."""
    group_w = max([len("GROUP"), *(len(r.group) for r in rows)])
    topic_w = max([len("TOPIC"), *(len(r.topic) for r in rows)])
    out.write(
        f"{'GROUP':<{group_w}} {'TOPIC':<{topic_w}} {'PARTITION':>9} "
        f"{'CURRENT-OFFSET':>15} {'LOG-END-OFFSET':>15} {'LAG':>6}"
        + ("  STATUS\n" if statuses is not None else "\n")
    )
    for row in rows:
        current = "-" if row.committed is None else str(row.committed)
        status = ""
        if statuses is not None:
            status = f"  {statuses.get((row.topic, row.partition), Status.OK).value}"
        out.write(
            f"{row.group:<{group_w}} {row.topic:<{topic_w}} {row.partition:>9} "
            f"{current:>15} {row.log_end:>15} {row.lag:>6}{status}\n"
        )
    out.write(f"total lag: {sum(r.lag for r in rows)}\n")


def oldest_unconsumed_age_s(
    bootstrap: str, rows: Sequence[PartitionLag], now_ms: int
) -> dict[tuple[str, int], float]:
    """Seconds since the oldest record not yet consumed was written, per lagging partition."""
    lagging = [r for r in rows if r.lag > 0]
    if not lagging:
        return {}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    ages: dict[tuple[str, int], float] = {}
    try:
        for row in lagging:
            tp = TopicPartition(row.topic, row.partition)
            consumer.assign([tp])
            consumer.seek(tp, row.committed or 0)
            records = consumer.poll(timeout_ms=2000, max_records=1).get(tp, [])
            if records:
                ages[(row.topic, row.partition)] = max(0.0, (now_ms - records[0].timestamp) / 1000)
    finally:
        consumer.close()
    return ages


EXIT_OK, EXIT_THRESHOLD, EXIT_UNREACHABLE = 0, 2, 3


def run_lag_command(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    *,
    as_json: bool,
    watch_s: float | None,
    max_lag: int | None,
    max_seconds: float | None,
    out: IO[str],
) -> int:
    """The ``lag`` command: print once (or every ``watch_s``), exit code for cron and CI."""
    tracker = StatusTracker()
    while True:
        try:
            rows = consumer_lag(bootstrap, group, topics)
            ages = oldest_unconsumed_age_s(bootstrap, rows, int(time.time() * 1000))
        except Exception as exc:  # any broker failure: one clear line, no traceback
            print(
                f"lag: cannot reach the broker at {bootstrap}: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return EXIT_UNREACHABLE
        statuses = track_statuses(tracker, rows, time.time())
        if as_json:
            out.write(json.dumps(_lag_document(group, rows, ages, statuses)) + "\n")
        else:
            print_lag(rows, out, statuses)
        crossed = any(
            (max_lag is not None and r.lag > max_lag)
            or (max_seconds is not None and ages.get((r.topic, r.partition), 0.0) > max_seconds)
            for r in rows
        )
        if watch_s is None:
            return EXIT_THRESHOLD if crossed else EXIT_OK
        out.flush()
        time.sleep(watch_s)


def track_statuses(
    tracker: StatusTracker, rows: Sequence[PartitionLag], at_s: float
) -> dict[tuple[str, int], Status]:
    """One sample per partition into ``tracker``; each partition's status after it."""
    return {
        (r.topic, r.partition): tracker.add(
            r.topic, r.partition, Sample(at_s, r.committed, r.log_end)
        )
        for r in rows
    }


class PartitionEntry(TypedDict):
    topic: str
    partition: int
    committed: int | None
    log_end: int
    lag: int
    lag_seconds: float
    status: str


def partition_entries(
    rows: Sequence[PartitionLag],
    ages: Mapping[tuple[str, int], float],
    statuses: Mapping[tuple[str, int], Status],
    *,
    digits: int = 3,
) -> list[PartitionEntry]:
    """Per partition, as ``lag --json`` and the coordinator page show it."""
    return [
        {
            "topic": r.topic,
            "partition": r.partition,
            "committed": r.committed,
            "log_end": r.log_end,
            "lag": r.lag,
            "lag_seconds": round(ages.get((r.topic, r.partition), 0.0), digits),
            "status": statuses[(r.topic, r.partition)].value,
        }
        for r in rows
    ]


def _lag_document(
    group: str,
    rows: Sequence[PartitionLag],
    ages: dict[tuple[str, int], float],
    statuses: Mapping[tuple[str, int], Status],
) -> dict[str, object]:
    return {
        "group": group,
        "total_lag": sum(r.lag for r in rows),
        "partitions": partition_entries(rows, ages, statuses),
    }
