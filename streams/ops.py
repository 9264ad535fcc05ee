"""Ops endpoints of the worker: Prometheus metrics, /healthz and /readyz.

Metric names follow what Kafka operators already chart (kafka-exporter's
``kafka_consumergroup_lag``) plus the service's own counters. The server runs in the
worker's event loop; checks that block (Redis ping, the lag query) run in threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from matcher.exceptions import StoreUnavailableError
from streams.lag import PartitionLag
from streams.processor import Outgoing

log = logging.getLogger(__name__)


class Metrics:
    """Every metric the worker exports, in a registry of its own (tests make several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "volmatch_events_consumed",
            "Input records handled, by topic and event type ('invalid': not an event)",
            ["topic", "type"],
            registry=r,
        )
        self.dead_letters = Counter(
            "volmatch_dead_letters", "Records sent to dead-letters", ["reason"], registry=r
        )
        self.proposed = Counter(
            "volmatch_assignments_proposed", "assignment.proposed published", registry=r
        )
        self.cancelled = Counter(
            "volmatch_assignments_cancelled",
            "assignment.cancelled published",
            ["reason"],
            registry=r,
        )
        self.unmatched = Counter(
            "volmatch_needs_unmatched", "need.unmatched published", ["reason"], registry=r
        )
        self.decision_seconds = Histogram(
            "volmatch_decision_seconds",
            "From a record's arrival to its outputs acknowledged",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.transient_errors = Counter(
            "volmatch_transient_errors", "Retries after Redis or conflict trouble", registry=r
        )
        self.redis_errors = Counter(
            "volmatch_redis_errors",
            "Redis calls that failed (connection lost, timeout), each retried",
            ["error"],
            registry=r,
        )
        self.encode_seconds = Histogram(
            "volmatch_model_encode_seconds",
            "Placing a batch's texts in the catalogue (parse, vectorise, classify)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.model_loaded = Gauge(
            "volmatch_model_loaded", "1 once the skill model is loaded", registry=r
        )
        self.lag = Gauge(
            "kafka_consumergroup_lag",
            "Records not yet consumed",
            ["consumergroup", "topic", "partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "kafka_consumergroup_lag_seconds",
            "Age of the oldest unconsumed record",
            ["consumergroup", "topic", "partition"],
            registry=r,
        )
        self.up = Gauge("volmatch_up", "1 while the broker answered the last lag query", registry=r)
        self.broker_reachable = False
        self.model_is_loaded = False

    def set_model_loaded(self, loaded: bool) -> None:
        self.model_is_loaded = loaded
        self.model_loaded.set(1 if loaded else 0)

    def set_broker_reachable(self, reachable: bool) -> None:
        self.broker_reachable = reachable
        self.up.set(1 if reachable else 0)

    def record(self, topic: str, kind: str, outgoing: Sequence[Outgoing], seconds: float) -> None:
        self.consumed.labels(topic=topic, type=kind).inc()
        self.decision_seconds.observe(seconds)
        for item in outgoing:
            self._count(item)

    def _count(self, item: Outgoing) -> None:
        if item.event_type == "assignment.proposed":
            self.proposed.inc()
            return
        data = json.loads(item.value)
        if item.event_type == "assignment.cancelled":
            self.cancelled.labels(reason=data.get("reason", "?")).inc()
        elif item.event_type == "need.unmatched":
            self.unmatched.labels(reason=data.get("reason", "?")).inc()
        elif item.event_type == "record.rejected":
            self.dead_letters.labels(reason=_dead_letter_reason(str(data.get("error", "")))).inc()

    def transient(self, exc: BaseException) -> None:
        self.transient_errors.inc()
        if isinstance(exc, StoreUnavailableError):
            cause = exc.__cause__
            self.redis_errors.labels(error=type(cause or exc).__name__).inc()

    def set_lag(self, rows: Sequence[PartitionLag], ages: dict[tuple[str, int], float]) -> None:
        for row in rows:
            labels = {
                "consumergroup": row.group,
                "topic": row.topic,
                "partition": str(row.partition),
            }
            self.lag.labels(**labels).set(row.lag)
            self.lag_seconds.labels(**labels).set(ages.get((row.topic, row.partition), 0.0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _dead_letter_reason(error: str) -> str:
    """A bounded label: the field named in the error, or the kind of problem."""
    if error.startswith("field '"):
        return error.split("'")[1].split(".")[0]
    if "not valid JSON" in error:
        return "not_json"
    if "not an object" in error:
        return "not_object"
    if "no booking is held" in error:
        return "unknown_booking"
    return "other"


@dataclass
class Readiness:
    """The checks behind /readyz; each returns None when fine, else what is wrong."""

    checks: dict[str, Callable[[], str | None]]

    async def problems(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                problem = await asyncio.to_thread(check)
            except Exception as exc:  # a failing check is a finding, not a crash
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                found[name] = problem
        return found


def ops_app(metrics: Metrics, readiness: Readiness) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        problems = await readiness.problems()
        status = 503 if problems else 200
        return web.json_response({"ready": not problems, "problems": problems}, status=status)

    async def metrics_view(_: web.Request) -> web.Response:
        body = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    # No access log: scrapers and the coordinator page poll every few seconds.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("ops endpoints on http://%s:%d (/metrics /healthz /readyz)", host, port)
    return runner
