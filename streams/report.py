"""What the live service published, as the tables ``python -m matcher demo`` prints."""

from __future__ import annotations

import json
import time
from typing import IO

from matcher.commands import print_tables
from schemas.events import OUTPUT_MODELS, NeedUnmatched, OutputEvent
from streams.io import read_to_end
from streams.lag import PartitionLag, consumer_lag, print_lag
from streams.topics import TopicNames


def wait_caught_up(
    bootstrap: str, group: str, topics: TopicNames, timeout_s: float
) -> list[PartitionLag]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = consumer_lag(bootstrap, group, topics.inputs)
        if sum(r.lag for r in rows) == 0 or time.monotonic() > deadline:
            return rows
        time.sleep(1.0)


def parse_outputs(values: list[bytes]) -> list[OutputEvent]:
    events: list[OutputEvent] = []
    for value in values:
        data = json.loads(value)
        model = OUTPUT_MODELS[data["type"]]
        events.append(model.model_validate(data))  # type: ignore[arg-type]
    return events


def print_report(
    bootstrap: str, group: str, topics: TopicNames, timeout_s: float, out: IO[str]
) -> int:
    rows = wait_caught_up(bootstrap, group, topics, timeout_s)
    events = parse_outputs(
        [r.value for t in topics.outputs for r in read_to_end(bootstrap, t) if r.value]
    )
    # Per need in the order decided: by time, and a trigger's bookings before its notice.
    events.sort(
        key=lambda e: (
            str(getattr(e, "need_id", "")),
            str(getattr(e, "occurred_at", "")),
            isinstance(e, NeedUnmatched),
        )
    )
    print_tables(events, out)
    out.write(f"\nConsumer lag of group {group}\n")
    print_lag(rows, out)
    return 0 if sum(r.lag for r in rows) == 0 else 3
