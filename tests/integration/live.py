"""A harness for tests against the live worker: real processes, real Kafka, real Redis.

Each test gets its own topic prefix, consumer group and Redis key prefix, so tests share
one broker and one Redis without seeing each other's records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer

from streams.infra import create_topics
from streams.io import read_to_end, route
from streams.lag import consumer_lag
from streams.topics import TopicNames
from streams.worker import READY_MARKER

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0


@dataclass
class LiveSetup:
    bootstrap: str
    redis_url: str
    workdir: Path
    needs_partitions: int = 6
    volunteers_partitions: int = 6
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def topics(self) -> TopicNames:
        return TopicNames(f"t{self.run_id}-")

    @property
    def group(self) -> str:
        return f"g{self.run_id}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "VOLMATCH_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
                "VOLMATCH_KAFKA__TOPIC_PREFIX": self.topics.prefix,
                "VOLMATCH_KAFKA__GROUP_ID": self.group,
                "VOLMATCH_KAFKA__PARTITIONS_NEEDS": str(self.needs_partitions),
                "VOLMATCH_KAFKA__PARTITIONS_VOLUNTEERS": str(self.volunteers_partitions),
                "VOLMATCH_KAFKA__PARTITIONS_OTHER": "3",
                "VOLMATCH_REDIS__URL": self.redis_url,
                "VOLMATCH_REDIS__KEY_PREFIX": f"k{self.run_id}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def create_topics(self) -> None:
        create_topics(
            self.bootstrap,
            self.topics.partitions(
                needs=self.needs_partitions, volunteers=self.volunteers_partitions, other=3
            ),
        )

    def produce(self, lines: Iterable[bytes]) -> int:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=2)
        count = 0
        try:
            for raw in lines:
                if raw.strip():
                    topic, key = route(raw, self.topics)
                    producer.send(topic, key=key, value=raw)
                    count += 1
            producer.flush()
        finally:
            producer.close()
        return count

    def wait_caught_up(self, timeout_s: float = 120.0) -> None:
        """Until the group's committed offsets reach the end of every input partition."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = consumer_lag(self.bootstrap, self.group, self.topics.inputs)
            if (
                rows
                and all(r.committed is not None or r.log_end == 0 for r in rows)
                and sum(r.lag for r in rows) == 0
            ):
                return
            time.sleep(0.5)
        raise TimeoutError(f"group {self.group} did not catch up in {timeout_s}s")

    def read_all(self, topic: str, timeout_s: float = 30.0) -> list[bytes]:
        """Every record in ``topic`` up to its end offsets now, all partitions."""
        return [r.value for r in read_to_end(self.bootstrap, topic, timeout_s)]

    def outputs(self) -> list[bytes]:
        return [v for t in self.topics.outputs for v in self.read_all(t)]


class Worker:
    """``python -m streams worker`` as a child process; its log goes to a file."""

    def __init__(
        self,
        setup: LiveSetup,
        name: str = "w1",
        *,
        ops_port: int = 0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.setup = setup
        self.ops_port = ops_port
        self.log_path = setup.workdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams",
                "worker",
                "--datadir",
                str(setup.workdir / f"faust-{name}"),
            ],
            cwd=ROOT,
            # Port 0 turns the ops endpoints off, so several workers never collide.
            env={
                **setup.env(),
                "VOLMATCH_OPS__PORT": str(ops_port),
                "VOLMATCH_OPS__LAG_INTERVAL_S": "2",
                **(extra_env or {}),
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            if READY_MARKER.encode() in self.log_path.read_bytes():
                return
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready after {timeout_s}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._log.close()
