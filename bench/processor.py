"""The record processor alone against a real Redis (``python -m bench.processor``): how
many records per second the decision path takes without Kafka, and where the time goes.

Starts its own redis-server on a free port, feeds a synthetic week through
``RecordProcessor.prepare`` (batches, as the worker does) and ``process`` one by one, and
counts Redis commands with ``INFO commandstats``. ``--profile`` prints cProfile's top.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.synthetic import synthetic_week
from matcher.settings import ModelSettings
from models.catalogue import load_catalogue
from models.factory import build_skill_model
from schemas.events import RecordSource
from streams.infra import LocalServices, default_cache_dir
from streams.processor import RecordProcessor
from streams.redis_store import RedisStore
from streams.topics import TopicNames


class _CountingConnection(redis.Connection):
    """Counts round trips: each packed command or pipeline sent is one."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _CountingConnection.sent += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def _server_time(client: redis.Redis) -> list[str]:
    """Where Redis itself spent its time: total µs per command, the largest first."""
    stats = client.info("commandstats")
    rows = sorted(
        (
            (int(v["usec"]), k.removeprefix("cmdstat_"), float(v["usec_per_call"]))
            for k, v in stats.items()
        ),
        reverse=True,
    )
    return [f"{name} {usec / 1e6:.2f} s ({per:.0f} µs/call)" for usec, name, per in rows[:4]]


def _commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def run(args: argparse.Namespace) -> None:
    lines = synthetic_week(load_catalogue(), volunteers=args.volunteers, needs=args.needs)
    with tempfile.TemporaryDirectory() as state:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        services = LocalServices(
            state_dir=Path(state),
            cache_dir=default_cache_dir(),
            redis_port=port,
            components=["redis"],
        )
        with services:
            pool = redis.ConnectionPool.from_url(
                services.redis_url, connection_class=_CountingConnection
            )
            client = redis.Redis(connection_pool=pool)
            processor = RecordProcessor(
                RedisStore(client, "bench"), build_skill_model(ModelSettings()), TopicNames()
            )
            profiler = cProfile.Profile() if args.profile else None
            per_kind: dict[str, list[float]] = {"volunteer": [], "need": []}
            client.config_resetstat()
            _CountingConnection.sent = 0
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            for first in range(0, len(lines), args.batch):
                batch = lines[first : first + args.batch]
                parsed = processor.prepare(batch)
                for offset, (raw, event) in enumerate(zip(batch, parsed, strict=True)):
                    source = RecordSource(topic="bench", partition=0, offset=first + offset)
                    t0 = time.perf_counter()
                    processor.process(raw, None, source, event)
                    kind = "volunteer" if b'"volunteer.' in raw[:40] else "need"
                    per_kind[kind].append(time.perf_counter() - t0)
                processor.end_batch()
            if profiler:
                profiler.disable()
            elapsed = time.perf_counter() - started
            trips = _CountingConnection.sent
            commands = _commands(client)
            server = _server_time(client)
    print(f"{len(lines)} records in {elapsed:.2f} s: {len(lines) / elapsed:,.0f} records/s")
    for kind, times in per_kind.items():
        if times:
            ms = sorted(t * 1000 for t in times)
            print(
                f"  {kind}: {len(ms)} records, mean {statistics.fmean(ms):.2f} ms, "
                f"p50 {ms[len(ms) // 2]:.2f} ms, p99 {ms[int(len(ms) * 0.99)]:.2f} ms"
            )
    print(f"  Redis commands: {commands:,} ({commands / len(lines):.1f} per record)")
    print(f"  Redis round trips: {trips:,} ({trips / len(lines):.2f} per record)")
    print(f"  Redis server time: {'; '.join(server)}")
    if profiler:
        # Counts, unlike seconds, do not depend on what else the machine is doing.
        stats = pstats.Stats(profiler)
        calls = stats.total_calls  # type: ignore[attr-defined]
        print(f"  Python function calls: {calls:,} ({calls / len(lines):,.0f} per record)")
        stats.sort_stats("cumulative").print_stats(args.profile)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.processor", description=__doc__)
    parser.add_argument("--volunteers", type=int, default=1000)
    parser.add_argument("--needs", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print top N")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
