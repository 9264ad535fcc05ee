"""Live benchmark against a real broker and Redis on this machine
(``python -m bench.live``): sustained throughput through one worker, need-to-decision
latency at a fixed offered rate, and lag recovery after a burst.

Latency is read from Kafka's own record timestamps: the input's create time (set by the
producer here) and the output's create time (set by the worker's producer), both on this
machine's clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from kafka import KafkaProducer

from bench.synthetic import synthetic_week
from models.catalogue import load_catalogue
from streams.infra import LocalServices, default_cache_dir
from streams.io import read_to_end, route
from tests.integration.live import LiveSetup, Worker


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _timestamps(setup: LiveSetup, topic: str) -> dict[str, int]:
    """need_id -> create time (ms) of its first record in ``topic``."""
    first: dict[str, int] = {}
    for record in read_to_end(setup.bootstrap, topic):
        need_id = json.loads(record.value).get("need_id")
        if isinstance(need_id, str) and need_id not in first:
            first[need_id] = record.timestamp
    return first


def _paced(setup: LiveSetup, lines: list[bytes], rate: float) -> None:
    producer = KafkaProducer(bootstrap_servers=setup.bootstrap, acks=1, linger_ms=1)
    started = time.perf_counter()
    for i, raw in enumerate(lines):
        target = started + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        topic, key = route(raw, setup.topics)
        producer.send(topic, key=key, value=raw)
    producer.flush()
    producer.close()


def run(args: argparse.Namespace) -> None:
    catalogue = load_catalogue()
    with tempfile.TemporaryDirectory() as tmp:
        kafka_port, controller_port, redis_port = _free_ports(3)
        services = LocalServices(
            state_dir=Path(tmp) / "svc",
            cache_dir=default_cache_dir(),
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            redis_port=redis_port,
        )
        services.start()
        try:
            setup = LiveSetup(services.kafka_bootstrap, services.redis_url, Path(tmp))
            setup.create_topics()
            workers = [Worker(setup, f"w{i}") for i in range(args.workers)]
            for worker in workers:
                worker.wait_ready()
            try:
                # 1. sustained throughput
                week = synthetic_week(
                    catalogue, volunteers=args.volunteers, needs=args.needs, seed=3
                )
                started = time.perf_counter()
                setup.produce(week)
                setup.wait_caught_up(timeout_s=3600)
                elapsed = time.perf_counter() - started
                print(
                    f"throughput: {len(week)} events in {elapsed:.1f} s = "
                    f"{len(week) / elapsed:.0f} events/s"
                )
                # 2. latency at a fixed offered rate
                probe = synthetic_week(
                    catalogue, volunteers=0, needs=args.rate_needs, seed=5, prefix="p"
                )
                _paced(setup, probe, args.rate)
                setup.wait_caught_up(timeout_s=600)
                sent = _timestamps(setup, setup.topics.needs)
                decided: dict[str, int] = {}
                for topic in (setup.topics.assignments, setup.topics.unmatched):
                    for need_id, ts in _timestamps(setup, topic).items():
                        decided[need_id] = min(ts, decided.get(need_id, ts))
                latencies = sorted(
                    decided[n] - sent[n] for n in sent if n.startswith("pn") and n in decided
                )
                if latencies:
                    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
                    print(
                        f"latency at {args.rate:.0f} needs/s over {len(latencies)} needs: "
                        f"p50 {statistics.median(latencies):.0f} ms, p99 {p99} ms"
                    )
                # 3. burst of 10x the rate, all at once
                burst = synthetic_week(
                    catalogue, volunteers=0, needs=int(args.rate * 10), seed=9, prefix="q"
                )
                started = time.perf_counter()
                setup.produce(burst)
                setup.wait_caught_up(timeout_s=3600)
                print(
                    f"burst of {len(burst)} needs: lag back to 0 after "
                    f"{time.perf_counter() - started:.1f} s"
                )
            finally:
                for worker in workers:
                    worker.stop()
        finally:
            services.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    parser.add_argument("--volunteers", type=int, default=1000)
    parser.add_argument("--needs", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=200.0, help="offered needs/s for latency")
    parser.add_argument("--rate-needs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="workers in one consumer group")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
