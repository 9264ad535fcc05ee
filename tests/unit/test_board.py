"""The coordinator board folds the service's topics; it shows, it never decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from schemas.codec import dump_output
from schemas.events import OutputEvent
from streams.board import Board, TopicKind, Viewer
from tests.conftest import Run
from tests.fakes import line, need, t, volunteer

NOW = datetime.fromisoformat(t(-1, 13))
C1, C2 = Viewer("c1"), Viewer("c2")
DISTRICT = Viewer(None)


def _kind_of_input(event: Mapping[str, Any]) -> TopicKind:
    kind = str(event["type"])
    if kind.startswith("volunteer."):
        return "volunteers"
    return "needs" if kind.startswith("need.") else "responses"


def _kind_of_output(event: OutputEvent) -> TopicKind:
    return "assignments" if event.type.startswith("assignment.") else "unmatched"


def fold(board: Board, run: Run, inputs: Sequence[Mapping[str, Any]]) -> list[OutputEvent]:
    """Inputs and the engine's outputs for them, as the board's feed would read them."""
    outputs = [o for o in run(list(inputs)) if o.type != "record.rejected"]
    for event in inputs:
        board.apply(_kind_of_input(event), line(event))
    for output in outputs:
        board.apply(_kind_of_output(output), dump_output(output).encode())
    return outputs


def week(contact: bool = True) -> list[dict[str, Any]]:
    extra = {"contact": {"phone": "13800000000"}} if contact else {}
    return [
        volunteer("v1", "电工", windows=[(t(0, 8), t(0, 18))]),
        volunteer("v2", "电工 二十年", windows=[(t(0, 8), t(0, 18))]),
        need("n1", "家里没电了", **extra),
        need("n2", "想学弹钢琴", **extra),
    ]


def test_a_booked_need_is_shown_with_its_score_and_reasons(run: Run) -> None:
    board = Board()
    fold(board, run, week())
    view = board.view(C1, NOW)
    [assignment] = view["assignments"]
    assert assignment["need_id"] == "n1"
    assert assignment["status"] == "proposed"
    assert {"skill", "time"} <= set(assignment["reasons"])
    assert assignment["actions"] == ["accept", "decline"]
    assert assignment["volunteer_name"].startswith("志愿者")


def test_an_unmatched_need_shows_its_reason(run: Run) -> None:
    board = Board()
    fold(board, run, week())
    [open_need] = board.view(C1, NOW)["open_needs"]
    assert open_need["need_id"] == "n2"
    assert open_need["reason"] == "no_skill_match"
    assert open_need["missing"] == 1


def test_contact_reaches_only_a_coordinator_of_that_community(run: Run) -> None:
    board = Board()
    fold(board, run, week())
    own = board.view(C1, NOW)
    assert own["open_needs"][0]["contact"] == {"phone": "13800000000"}
    for viewer in (C2, DISTRICT):
        shown = str(board.view(viewer, NOW))
        assert "13800000000" not in shown
        assert "志愿者" not in shown  # the volunteer's name is personal data too
        assert "没电" not in shown  # the resident's own words stay in the community


def test_other_communities_see_nothing_of_c1_and_the_district_sees_all(run: Run) -> None:
    board = Board()
    fold(board, run, week())
    assert board.view(C2, NOW)["assignments"] == []
    assert board.view(C2, NOW)["open_needs"] == []
    district = board.view(DISTRICT, NOW)
    assert [a["need_id"] for a in district["assignments"]] == ["n1"]
    assert district["assignments"][0]["actions"] == []


def test_fill_rate_counts_seats_booked_over_seats_asked(run: Run) -> None:
    board = Board()
    fold(board, run, [*week(), need("n3", "电路跳闸", headcount=3)])
    [c1] = board.fill_rates()
    assert c1 == {
        "community": "c1",
        "needs": 3,
        "seats_asked": 5,
        "seats_booked": 3,
        "fill_rate": 0.6,
    }


def test_a_decline_then_the_rematch_shows_both(run: Run) -> None:
    board = Board()
    outputs = fold(board, run, week())
    first = next(o for o in outputs if o.type == "assignment.proposed")
    decline = {
        "type": "assignment.declined",
        "event_id": "d1",
        "occurred_at": t(-1, 12, 30),
        "need_id": "n1",
        "volunteer_id": first.volunteer_id,  # type: ignore[union-attr]
    }
    board2 = Board()
    fold(board2, run, [*week(), decline])
    rows = {a["volunteer_id"]: a["status"] for a in board2.view(C1, NOW)["assignments"]}
    assert rows[first.volunteer_id] == "declined"  # type: ignore[union-attr]
    assert sorted(rows.values()) == ["declined", "proposed"]
    assert [n["need_id"] for n in board2.view(C1, NOW)["open_needs"]] == ["n2"]


def test_an_answer_read_before_its_booking_still_applies(run: Run) -> None:
    board = Board()
    accepted = {
        "type": "assignment.accepted",
        "event_id": "a1",
        "occurred_at": t(-1, 12, 30),
        "need_id": "n1",
        "volunteer_id": "v1",
    }
    board.apply("responses", line(accepted))
    fold(board, run, week())
    [assignment] = board.view(C1, NOW)["assignments"]
    assert assignment["volunteer_id"] == "v1"
    assert assignment["status"] == "accepted"
    assert assignment["actions"] == ["decline", "complete"]


def test_a_cancelled_need_leaves_the_open_list_and_its_booking_is_cancelled(run: Run) -> None:
    board = Board()
    cancel = {"type": "need.cancelled", "event_id": "c1", "occurred_at": t(-1, 12, 40)}
    fold(
        board,
        run,
        [*week(), {**cancel, "need_id": "n1"}, {**cancel, "event_id": "c2", "need_id": "n2"}],
    )
    view = board.view(C1, NOW)
    assert view["open_needs"] == []
    assert [a["status"] for a in view["assignments"]] == ["cancelled"]


def test_a_pending_need_whose_window_passed_shows_expired(run: Run) -> None:
    board = Board()
    fold(board, run, [need("n9", "家里没电了")])
    later = datetime.fromisoformat(t(1, 0))
    [row] = board.view(C1, later)["open_needs"]
    assert row["reason"] == "expired"
    assert row["pending"] is False


def test_bad_records_are_skipped_and_memory_is_bounded(run: Run) -> None:
    board = Board(max_needs=2)
    board.apply("needs", b"not json")
    board.apply("assignments", b"[1, 2]")
    for i in range(5):
        board.apply("needs", line(need(f"m{i}", "家里没电了")))
    assert [n["need_id"] for n in board.view(C1, NOW)["open_needs"]] == ["m4", "m3"]
    assert board.records_read == 7


def test_answers_whose_booking_never_appears_are_bounded(run: Run) -> None:
    board = Board(max_needs=2)
    for i in range(5):
        answer = {
            "type": "assignment.accepted",
            "event_id": f"a{i}",
            "occurred_at": t(-1, 12, 30),
            "need_id": f"n{i}",
            "volunteer_id": "v1",
        }
        board.apply("responses", line(answer))
    assert len(board._early_answers) == 2
    assert list(board._early_answers) == [("n3", "v1"), ("n4", "v1")]
