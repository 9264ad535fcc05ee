"""The coordinator page's API: tokens on every request, answers as contract events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from matcher.settings import CoordinatorSettings
from schemas.codec import parse_input
from schemas.events import AssignmentDeclined
from streams.board import Board, Viewer
from streams.coordinator import CoordinatorDesk, Tokens, add_coordinator_routes
from streams.topics import TopicNames
from tests.conftest import Run
from tests.fakes import need, t, volunteer
from tests.unit.test_board import fold

TOKENS = CoordinatorSettings(tokens={"c1": "tok-c1", "c2": "tok-c2"}, district_token="tok-d")


class FixedClock:
    def now(self) -> datetime:
        return datetime.fromisoformat(t(-1, 13))


class RecordingPublisher:
    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail = fail

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.sent.append((topic, key, value))


@pytest.fixture
def board(run: Run) -> Board:
    board = Board()
    fold(
        board,
        run,
        [
            volunteer("v1", "电工", windows=[(t(0, 8), t(0, 18))]),
            need("n1", "家里没电了", contact={"phone": "13800000000"}),
        ],
    )
    return board


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest_asyncio.fixture
async def client(
    board: Board, publisher: RecordingPublisher
) -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application()
    clock = FixedClock()
    desk = CoordinatorDesk(board, publisher, TopicNames("p-"), clock)
    add_coordinator_routes(app, board, desk, Tokens(TOKENS), clock)
    async with TestClient(TestServer(app)) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assignment_id(board: Board) -> str:
    view = board.view(Viewer("c1"), FixedClock().now())
    return str(view["assignments"][0]["assignment_id"])


@pytest.mark.asyncio
async def test_the_page_itself_holds_no_data(client: TestClient[Any, Any]) -> None:
    response = await client.get("/coordinator")
    assert response.status == 200
    html = await response.text()
    assert "Coordinator board" in html
    assert "13800000000" not in html
    assert "n1" not in html


@pytest.mark.asyncio
@pytest.mark.parametrize("headers", [{}, auth("wrong"), {"Authorization": "tok-c1"}])
async def test_every_api_request_needs_a_known_token(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    board = await client.get("/coordinator/api/board", headers=headers)
    respond = await client.post("/coordinator/api/respond", json={}, headers=headers)
    assert board.status == 401
    assert respond.status == 401
    assert "13800000000" not in await board.text()


@pytest.mark.asyncio
async def test_a_coordinator_sees_the_contact_of_their_community_only(
    client: TestClient[Any, Any],
) -> None:
    own = await (await client.get("/coordinator/api/board", headers=auth("tok-c1"))).text()
    other = await (await client.get("/coordinator/api/board", headers=auth("tok-c2"))).text()
    district = await (await client.get("/coordinator/api/board", headers=auth("tok-d"))).text()
    assert "13800000000" not in own  # n1 is booked, so it is not an open need
    assert json.loads(own)["assignments"][0]["need_text"] == "家里没电了"
    assert json.loads(other)["assignments"] == []
    assert json.loads(district)["assignments"][0]["actions"] == []
    assert "家里没电了" not in district


@pytest.mark.asyncio
async def test_a_decline_publishes_the_contract_event(
    client: TestClient[Any, Any], board: Board, publisher: RecordingPublisher
) -> None:
    aid = assignment_id(board)
    response = await client.post(
        "/coordinator/api/respond",
        json={"assignment_id": aid, "action": "decline"},
        headers=auth("tok-c1"),
    )
    assert response.status == 200, await response.text()
    [(topic, key, value)] = publisher.sent
    assert (topic, key) == ("p-assignment-responses", b"n1")
    event = parse_input(value)
    assert isinstance(event, AssignmentDeclined)
    assert (event.need_id, event.volunteer_id, event.assignment_id) == ("n1", "v1", aid)
    assert event.occurred_at == FixedClock().now()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("token", "body", "status"),
    [
        ("tok-c2", {"action": "decline"}, 403),
        ("tok-d", {"action": "decline"}, 403),
        ("tok-c1", {"action": "complete"}, 409),
        ("tok-c1", {"action": "explode"}, 400),
        ("tok-c1", {"action": "accept", "assignment_id": "nope"}, 404),
        ("tok-c1", {"action": "accept", "rating": 9}, 400),
    ],
)
async def test_answers_that_cannot_be_given_are_refused_with_a_reason(
    client: TestClient[Any, Any],
    board: Board,
    publisher: RecordingPublisher,
    token: str,
    body: dict[str, Any],
    status: int,
) -> None:
    payload = {"assignment_id": assignment_id(board), **body}
    response = await client.post("/coordinator/api/respond", json=payload, headers=auth(token))
    assert response.status == status
    assert (await response.json())["error"]
    assert publisher.sent == []


@pytest.mark.asyncio
async def test_a_broker_that_does_not_take_the_answer_is_a_503(board: Board) -> None:
    app = web.Application()
    clock = FixedClock()
    desk = CoordinatorDesk(board, RecordingPublisher(fail=True), TopicNames(), clock)
    add_coordinator_routes(app, board, desk, Tokens(TOKENS), clock)
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/coordinator/api/respond",
            json={"assignment_id": assignment_id(board), "action": "accept"},
            headers=auth("tok-c1"),
        )
        assert response.status == 503
        assert "broker" in (await response.json())["error"]


def test_tokens_name_their_community() -> None:
    tokens = Tokens(TOKENS)
    assert tokens.viewer("tok-c1") == Viewer("c1")
    assert tokens.viewer("tok-d") == Viewer(None)
    assert tokens.viewer("") is None
    assert tokens.viewer("tok-c3") is None
    assert "tok-c1" not in repr(TOKENS)


@pytest.mark.asyncio
async def test_a_double_click_publishes_one_answer(
    client: TestClient[Any, Any], board: Board, publisher: RecordingPublisher
) -> None:
    body = {"assignment_id": assignment_id(board), "action": "accept"}
    first = await client.post("/coordinator/api/respond", json=body, headers=auth("tok-c1"))
    second = await client.post("/coordinator/api/respond", json=body, headers=auth("tok-c1"))
    assert (first.status, second.status) == (200, 409)
    assert len(publisher.sent) == 1
