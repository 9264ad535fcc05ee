"""The coordinator page: a live board of needs and assignments, and answers sent back.

- ``GET /coordinator`` serves the page (no data in it: the data comes from the API);
- ``GET /coordinator/api/board`` the board as the token's holder may see it;
- ``POST /coordinator/api/respond`` accept, decline or complete an assignment: it
  publishes the contract's ``assignment-responses`` event, which the worker then handles
  like any other (a decline frees the slot and matches the need again).

Every API request carries ``Authorization: Bearer <token>``; tokens come from the
settings, one per community. The page keeps its token in the tab's session storage, read
from the URL fragment, which browsers never send to the server (nor into its logs).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from matcher.settings import CoordinatorSettings
from matcher.timeslots import BEIJING
from schemas.codec import parse_input
from streams.board import Board, TopicKind, Viewer
from streams.exceptions import ResponseNotPublishedError, ResponseRejectedError
from streams.io import partitions_of
from streams.topics import TopicNames

log = logging.getLogger(__name__)

SENT_REMEMBERED = 10_000
ACTION_EVENT = {
    "accept": "assignment.accepted",
    "decline": "assignment.declined",
    "complete": "assignment.completed",
}


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(BEIJING).replace(microsecond=0)


class ResponsePublisher(Protocol):
    async def publish(self, topic: str, key: bytes, value: bytes) -> None: ...


class Tokens:
    """Who a bearer token belongs to; every comparison in constant time."""

    def __init__(self, settings: CoordinatorSettings) -> None:
        self._by_community = dict(settings.tokens)
        self._district = settings.district_token

    def viewer(self, token: str) -> Viewer | None:
        if not token:
            return None
        found: Viewer | None = None
        for community, expected in self._by_community.items():
            if expected and hmac.compare_digest(token.encode(), expected.encode()):
                found = Viewer(community)
        if self._district and hmac.compare_digest(token.encode(), self._district.encode()):
            found = Viewer(None)
        return found


class CoordinatorDesk:
    """Turns a coordinator's click into a contract event on ``assignment-responses``."""

    def __init__(
        self, board: Board, publisher: ResponsePublisher, topics: TopicNames, clock: Clock
    ) -> None:
        self._board = board
        self._publisher = publisher
        self._topics = topics
        self._clock = clock
        # Answers already published: a double click must not publish a second event
        # (the worker would dead-letter it) before the board has read the first back.
        self._sent: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def respond(
        self, viewer: Viewer, assignment_id: str, action: str, rating: int | None = None
    ) -> dict[str, Any]:
        event = self.response_event(viewer, assignment_id, action, rating)
        if (assignment_id, action) in self._sent:
            raise ResponseRejectedError(
                f"{action!r} was already sent for this assignment", status=409
            )
        raw = json.dumps(event, ensure_ascii=False).encode()
        parse_input(raw)  # what we send must pass the contract the worker checks
        try:
            await self._publisher.publish(self._topics.responses, event["need_id"].encode(), raw)
        except Exception as exc:
            raise ResponseNotPublishedError(f"the broker did not take the answer: {exc}") from exc
        self._sent[(assignment_id, action)] = None
        while len(self._sent) > SENT_REMEMBERED:
            self._sent.popitem(last=False)
        log.info("coordinator answer %s for assignment %s", event["type"], assignment_id)
        return event

    def response_event(
        self, viewer: Viewer, assignment_id: str, action: str, rating: int | None
    ) -> dict[str, Any]:
        row = self._board.assignment(assignment_id)
        if row is None:
            raise ResponseRejectedError(f"no assignment {assignment_id!r} is shown", status=404)
        if not viewer.may_see_personal_data_of(row.community):
            raise ResponseRejectedError(
                "only a coordinator of the assignment's community may answer it", status=403
            )
        if action not in row.actions():
            raise ResponseRejectedError(
                f"action {action!r} is not open for an assignment that is {row.status}",
                status=409,
            )
        event: dict[str, Any] = {
            "type": ACTION_EVENT[action],
            "event_id": f"coordinator-{uuid.uuid4().hex}",
            "occurred_at": self._clock.now().isoformat(),
            "need_id": row.need_id,
            "volunteer_id": row.volunteer_id,
            "assignment_id": row.assignment_id,
        }
        if action == "complete" and rating is not None:
            event["rating"] = rating
        return event


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def page_html() -> bytes:
    return resources.files("streams").joinpath("static/coordinator.html").read_bytes()


def add_coordinator_routes(
    app: web.Application, board: Board, desk: CoordinatorDesk, tokens: Tokens, clock: Clock
) -> None:
    def viewer_of(request: web.Request) -> Viewer:
        viewer = tokens.viewer(_bearer(request))
        if viewer is None:
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": "a valid coordinator token is required"}),
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="coordinator"'},
            )
        return viewer

    async def page(_: web.Request) -> web.Response:
        return web.Response(
            body=page_html(),
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    async def board_view(request: web.Request) -> web.Response:
        viewer = viewer_of(request)
        return web.json_response(
            board.view(viewer, clock.now()),
            dumps=lambda o: json.dumps(o, ensure_ascii=False),
            headers={"Cache-Control": "no-store"},
        )

    async def respond(request: web.Request) -> web.Response:
        viewer = viewer_of(request)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        problem = _respond_body_problem(body)
        if problem:
            return _error(400, problem)
        try:
            event = await desk.respond(
                viewer, body["assignment_id"], body["action"], body.get("rating")
            )
        except ResponseRejectedError as exc:
            return _error(exc.status, str(exc))
        except ResponseNotPublishedError as exc:
            return _error(503, str(exc))
        return web.json_response({"published": event["type"], "event_id": event["event_id"]})

    app.router.add_get("/coordinator", page)
    app.router.add_get("/coordinator/api/board", board_view)
    app.router.add_post("/coordinator/api/respond", respond)


def _respond_body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("assignment_id"), str) or not body["assignment_id"]:
        return "field 'assignment_id' must be a non-empty string"
    if body.get("action") not in ACTION_EVENT:
        return "field 'action' must be one of " + ", ".join(ACTION_EVENT)
    rating = body.get("rating")
    if rating is not None and (type(rating) is not int or not 1 <= rating <= 5):
        return "field 'rating' must be an integer 1..5"
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class KafkaResponsePublisher:
    """aiokafka producer, started on first use so the page comes up with the broker away."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        producer = await self._started()
        await asyncio.wait_for(producer.send_and_wait(topic, value=value, key=key), 15.0)

    async def _started(self) -> Any:
        from aiokafka import AIOKafkaProducer

        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all")
                await asyncio.wait_for(producer.start(), 15.0)
                self._producer = producer
            return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def topic_kinds(topics: TopicNames) -> Mapping[str, TopicKind]:
    return {
        topics.needs: "needs",
        topics.volunteers: "volunteers",
        topics.assignments: "assignments",
        topics.unmatched: "unmatched",
        topics.responses: "responses",
    }


class BoardFeed:
    """Reads the service's topics from their beginning into the board, then follows them.

    No consumer group: every page server reads everything, commits nothing, and a
    restart rebuilds the board from the topics (the board holds no state of its own).
    """

    def __init__(self, bootstrap_servers: str, topics: TopicNames, board: Board) -> None:
        self._bootstrap = bootstrap_servers
        self._kinds = topic_kinds(topics)
        self._board = board

    async def run_forever(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker being away must not end the page
                log.warning("coordinator board feed stopped (%s); retrying in 5 s", exc)
                await asyncio.sleep(5.0)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        found = await asyncio.to_thread(partitions_of, self._bootstrap, list(self._kinds))
        missing = sorted(set(self._kinds) - {tp.topic for tp in found})
        if missing:
            raise RuntimeError(f"topics {', '.join(missing)} do not exist yet")
        partitions = [TopicPartition(tp.topic, tp.partition) for tp in found]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            await self._read(consumer, ends)
        finally:
            await consumer.stop()

    async def _read(self, consumer: Any, ends: dict[Any, int]) -> None:
        behind = {tp for tp, end in ends.items() if end > 0}
        self._board.caught_up = not behind
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                kind = self._kinds[tp.topic]
                for record in records:
                    if record.value is not None:
                        self._board.apply(kind, record.value)
                if behind and records and records[-1].offset + 1 >= ends.get(tp, 0):
                    behind.discard(tp)
            if behind and not self._board.caught_up:
                behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
            self._board.caught_up = not behind
