"""Local real infrastructure: a single-node Kafka (KRaft) broker and a Redis with AOF.

`LocalServices` drives ``scripts/services.sh`` with an explicit environment built from
its constructor arguments; this module reads no configuration from ``os.environ``
itself (the child process only inherits the caller's environment for PATH, HOME and
the like, and every setting the script reads is overwritten).

`wait_for_kafka` and `create_topics` talk to any broker through kafka-python's admin
client. The broker runs with ``auto.create.topics.enable=false``: every topic the
service reads or writes must be created with `create_topics` first. faust creates only
its own internal topics (changelogs, repartition topics), never source or sink topics.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from kafka import KafkaAdminClient  # type: ignore[import-untyped, unused-ignore]
from kafka.admin import NewTopic  # type: ignore[import-untyped, unused-ignore]
from kafka.errors import (  # type: ignore[import-untyped, unused-ignore]
    KafkaError,
    TopicAlreadyExistsError,
)

__all__ = [
    "SERVICES_SCRIPT",
    "Component",
    "LocalServices",
    "ServicesError",
    "create_topics",
    "default_cache_dir",
    "wait_for_kafka",
]

log = logging.getLogger(__name__)

SERVICES_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "services.sh"
"""The shell script that fetches, starts and stops the services."""

Component = Literal["kafka", "redis"]

_HOST = "127.0.0.1"


class ServicesError(RuntimeError):
    """``scripts/services.sh`` failed; the message carries its output."""


def default_cache_dir() -> Path:
    """Where the broker jars are cached when nobody says otherwise."""
    return Path.home() / ".cache" / "volmatch"


class LocalServices:
    """Kafka and/or Redis as local background processes, managed by ``services.sh``.

    All state (broker data, the Redis AOF, logs, pid files) lives under ``state_dir``;
    the Maven-resolved broker jars live under ``cache_dir`` and are shared between
    state dirs. ``components`` limits which of the two services this object manages.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        cache_dir: Path | None = None,
        kafka_port: int = 9092,
        kafka_controller_port: int = 9093,
        redis_port: int = 6379,
        components: Collection[Component] = ("kafka", "redis"),
        script: Path = SERVICES_SCRIPT,
        timeout_s: float = 600.0,
    ) -> None:
        if not components:
            raise ValueError("components must name at least one of 'kafka', 'redis'")
        self.state_dir = Path(state_dir).resolve()
        self.cache_dir = Path(cache_dir if cache_dir is not None else default_cache_dir())
        self.kafka_port = kafka_port
        self.kafka_controller_port = kafka_controller_port
        self.redis_port = redis_port
        self.components: frozenset[Component] = frozenset(components)
        self.script = script
        self.timeout_s = timeout_s

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{_HOST}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        """``redis://`` URL of database 0."""
        return f"redis://{_HOST}:{self.redis_port}/0"

    def _which(self) -> str:
        if len(self.components) == 2:
            return "all"
        (only,) = self.components
        return only

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_PORT=str(self.kafka_port),
            KAFKA_CONTROLLER_PORT=str(self.kafka_controller_port),
            REDIS_PORT=str(self.redis_port),
            VOLMATCH_STATE=str(self.state_dir),
            VOLMATCH_CACHE=str(self.cache_dir),
        )
        return env

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        bash = shutil.which("bash") or "/bin/bash"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [bash, str(self.script), *args]
        log.debug("running %s", cmd)
        try:
            proc = subprocess.run(  # noqa: S603 - fixed script, arguments from this class
                cmd,
                env=self._env(),
                cwd=self.state_dir,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServicesError(f"{' '.join(args)} timed out after {self.timeout_s}s") from exc
        output = (proc.stdout + proc.stderr).strip()
        if output:
            log.debug("services.sh %s: %s", " ".join(args), output)
        if check and proc.returncode != 0:
            raise ServicesError(f"services.sh {' '.join(args)} exited {proc.returncode}:\n{output}")
        return proc

    def fetch(self) -> None:
        """Resolve the broker jars into the cache (no-op when already there)."""
        self._run("fetch")

    def start(self) -> None:
        """Start the managed services and wait until they answer (idempotent)."""
        self._run("start", self._which())

    def stop(self) -> None:
        """Stop the managed services: SIGTERM, SIGKILL after a timeout (idempotent)."""
        self._run("stop", self._which())

    def is_running(self) -> bool:
        """True when every managed service is up and answering."""
        return self._run("status", self._which(), check=False).returncode == 0

    def restart_kafka(self) -> None:
        """Stop and start the broker; its data (topics, offsets) survives."""
        self._require("kafka")
        self._run("restart-kafka")

    def restart_redis(self) -> None:
        """Stop and start Redis; its data survives through the append-only file."""
        self._require("redis")
        self._run("restart-redis")

    def _require(self, component: Component) -> None:
        if component not in self.components:
            raise ServicesError(f"{component} is not managed by this LocalServices")

    def __enter__(self) -> LocalServices:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _NotReadyError(Exception):
    pass


def _admin(bootstrap: str, request_timeout_ms: int = 10_000) -> Any:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="volmatch-infra",
        request_timeout_ms=request_timeout_ms,
    )


def wait_for_kafka(
    bootstrap: str, timeout_s: float = 60.0, *, group_coordinator: bool = True
) -> None:
    """Block until the broker at ``bootstrap`` answers a metadata request with a
    controller and at least one broker; raise `TimeoutError` otherwise.

    With ``group_coordinator`` (the default) also wait until a group coordinator answers
    FindCoordinator. On a fresh broker that request creates ``__consumer_offsets``; doing
    it here spares the first consumer group (a faust worker) a round of
    ``GroupCoordinatorNotAvailableError`` and coordinator retries."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        try:
            admin = _admin(bootstrap, request_timeout_ms=5_000)
            try:
                cluster: dict[str, Any] = admin.describe_cluster()
                if not cluster.get("brokers") or cluster.get("controller_id", -1) < 0:
                    raise _NotReadyError(f"cluster not ready yet: {cluster}")
                if group_coordinator:
                    admin.describe_consumer_groups(["volmatch-readiness-probe"])
            finally:
                admin.close()
            return
        except (KafkaError, OSError, ValueError, _NotReadyError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Kafka at {bootstrap} not ready after {timeout_s}s: {last!r}")
        time.sleep(0.5)


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics (name -> partitions) that do not exist yet; return the names
    created by this call. Existing topics are left as they are (a different partition
    count is logged, not changed). Returns once every topic has a leader for each
    partition."""
    configs = configs or {}
    created: list[str] = []
    admin = _admin(bootstrap)
    try:
        existing = set(admin.list_topics())
        for name, partitions in topics.items():
            if name in existing:
                continue
            new = NewTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs=dict(configs.get(name, {})),
            )
            try:
                admin.create_topics([new], timeout_ms=int(timeout_s * 1000))
                created.append(name)
            except TopicAlreadyExistsError:
                log.debug("topic %s was created concurrently", name)
        _wait_for_leaders(admin, topics, timeout_s)
    finally:
        admin.close()
    if created:
        log.info("created topics %s", created)
    return created


def _wait_for_leaders(admin: Any, topics: Mapping[str, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        pending: list[str] = []
        mismatched: list[str] = []
        for meta in admin.describe_topics(list(topics)):
            name = meta["topic"]
            parts = meta.get("partitions") or []
            if meta.get("error_code", 0) != 0 or not parts:
                pending.append(name)
                continue
            if any(p.get("leader", -1) < 0 for p in parts):
                pending.append(name)
            elif len(parts) != topics[name]:
                mismatched.append(f"{name} has {len(parts)}, not {topics[name]}")
        if not pending:
            if mismatched:
                log.warning("existing topics with other partition counts: %s", mismatched)
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics without leaders after {timeout_s}s: {pending}")
        time.sleep(0.2)
