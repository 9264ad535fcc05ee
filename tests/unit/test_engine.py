from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from schemas.events import (
    AssignmentCancelled,
    AssignmentProposed,
    NeedUnmatched,
    OutputEvent,
    RecordRejected,
)
from tests.conftest import Run, dumps
from tests.fakes import DEFAULT_KEYWORDS, KeywordSkillModel, need, t, volunteer

MORNING = [(t(0, 8), t(0, 12))]


def of(kind: type, events: list[OutputEvent]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def response(kind: str, nid: str, vid: str, eid: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"assignment.{kind}",
        "event_id": eid,
        "occurred_at": t(-1, 13),
        "need_id": nid,
        "volunteer_id": vid,
        **extra,
    }


def test_books_earliest_slot_with_reasons(run: Run) -> None:
    out = run([volunteer("v1", windows=MORNING), need("n1", duration_minutes=90)])
    [booking] = of(AssignmentProposed, out)
    assert booking.volunteer_id == "v1"
    assert booking.slot.start.isoformat() == t(0, 9)
    assert (booking.slot.end - booking.slot.start).total_seconds() == 90 * 60
    assert {"skill", "time", "load"} <= booking.reasons.keys()
    assert 0 <= booking.score <= 1
    assert booking.service_type == "repair.electrical"


def test_same_input_same_bytes(run: Run) -> None:
    events = [
        volunteer("v1", windows=MORNING),
        volunteer("v2", windows=MORNING),
        need("n1", headcount=3),
    ]
    assert dumps(run(events)) == dumps(run(events))


def test_headcount_books_distinct_volunteers_and_reports_the_rest(run: Run) -> None:
    out = run(
        [
            volunteer("v1", windows=MORNING),
            volunteer("v2", windows=MORNING),
            need("n1", headcount=3),
        ]
    )
    assert sorted(b.volunteer_id for b in of(AssignmentProposed, out)) == ["v1", "v2"]
    [unmatched] = of(NeedUnmatched, out)
    assert (unmatched.missing, unmatched.reason, unmatched.pending) == (1, "no_skill_match", True)


def test_no_skill_match_does_not_book_a_stranger(run: Run) -> None:
    out = run([volunteer("v1", "会陪老人聊天", windows=MORNING), need("n1", "水管漏了")])
    assert not of(AssignmentProposed, out)
    assert of(NeedUnmatched, out)[0].reason == "no_skill_match"


def test_unplaceable_need_is_not_pending(run: Run) -> None:
    out = run([volunteer("v1", windows=MORNING), need("n1", "公交车改线了")])
    [unmatched] = of(NeedUnmatched, out)
    assert unmatched.reason == "no_skill_match"
    assert not unmatched.pending


def test_no_time_overlap(run: Run) -> None:
    out = run([volunteer("v1", windows=[(t(1, 8), t(1, 12))]), need("n1")])
    assert of(NeedUnmatched, out)[0].reason == "no_time_overlap"


def test_no_capacity(run: Run) -> None:
    out = run(
        [
            volunteer("v1", windows=MORNING, max_hours_per_week=1),
            need("n0", duration_minutes=60),
            need("n1", duration_minutes=60),
        ]
    )
    assert len(of(AssignmentProposed, out)) == 1
    assert of(NeedUnmatched, out)[0].reason == "no_capacity"


def test_expired_window(run: Run) -> None:
    out = run([volunteer("v1", windows=MORNING), need("n1", at=t(0, 11, 30))])
    [unmatched] = of(NeedUnmatched, out)
    assert (unmatched.reason, unmatched.pending) == ("expired", False)


def test_pending_need_is_booked_when_a_volunteer_arrives(run: Run) -> None:
    out = run([need("n1"), volunteer("v1", windows=MORNING, at=t(-1, 13))])
    assert of(NeedUnmatched, out)[0].pending
    [booking] = of(AssignmentProposed, out)
    assert booking.need_id == "n1"


def test_pending_need_expires_when_time_passes(run: Run) -> None:
    out = run([need("n1"), volunteer("v9", "数学老师", windows=MORNING, at=t(0, 13))])
    reasons = [u.reason for u in of(NeedUnmatched, out)]
    assert reasons == ["no_skill_match", "expired"]


def test_decline_frees_the_slot_and_never_rebooks_the_decliner(run: Run) -> None:
    out = run(
        [
            volunteer("v1", windows=MORNING),
            volunteer("v2", windows=MORNING),
            need("n1"),
            response("declined", "n1", "v1", "r1"),
            response("declined", "n1", "v2", "r2"),
        ]
    )
    booked = [b.volunteer_id for b in of(AssignmentProposed, out)]
    assert booked == ["v1", "v2"]
    cancelled = of(AssignmentCancelled, out)
    assert [(c.volunteer_id, c.reason) for c in cancelled] == [
        ("v1", "declined"),
        ("v2", "declined"),
    ]
    assert of(NeedUnmatched, out)[-1].reason == "no_skill_match"


def test_need_cancelled_withdraws_bookings_and_frees_time(run: Run) -> None:
    out = run(
        [
            volunteer("v1", windows=MORNING, max_hours_per_week=1),
            need("n1"),
            need("n2"),
            {"type": "need.cancelled", "event_id": "c1", "occurred_at": t(-1, 14), "need_id": "n1"},
        ]
    )
    [cancel] = of(AssignmentCancelled, out)
    assert (cancel.need_id, cancel.reason) == ("n1", "need_cancelled")
    assert [b.need_id for b in of(AssignmentProposed, out)] == ["n1", "n2"]


def test_withdrawn_volunteer_gets_no_new_booking(run: Run) -> None:
    out = run(
        [
            volunteer("v1", windows=MORNING),
            {
                "type": "volunteer.withdrawn",
                "event_id": "w1",
                "occurred_at": t(-1, 9),
                "volunteer_id": "v1",
            },
            need("n1"),
        ]
    )
    assert not of(AssignmentProposed, out)


def test_duplicate_event_has_no_effect(run: Run) -> None:
    events = [volunteer("v1", windows=MORNING), need("n1"), need("n1")]
    assert len(run(events)) == 1


def test_second_post_of_a_need_id_is_rejected(run: Run) -> None:
    second = need("n1")
    second["event_id"] = "other"
    out = run([volunteer("v1", windows=MORNING), need("n1"), second])
    assert "need_id" in of(RecordRejected, out)[0].error


def test_response_for_unknown_booking_is_dead_lettered(run: Run) -> None:
    out = run(
        [
            volunteer("v1", windows=MORNING),
            need("n1"),
            response("accepted", "n1", "v2", "r1"),
            response("accepted", "n1", "v1", "r2", assignment_id="a-wrong"),
        ]
    )
    rejected = of(RecordRejected, out)
    assert len(rejected) == 2
    assert "assignment_id" in rejected[1].error
    assert rejected[0].source.offset == 2


def test_accept_and_complete_publish_nothing(run: Run) -> None:
    out = run(
        [
            volunteer("v1", windows=MORNING),
            need("n1"),
            response("accepted", "n1", "v1", "r1"),
            response("completed", "n1", "v1", "r2", rating=5),
        ]
    )
    assert len(out) == 1


def test_volunteer_update_replaces_windows_but_keeps_bookings(run: Run) -> None:
    later = volunteer("v1", windows=[(t(0, 9), t(0, 11))], at=t(-1, 13))
    out = run(
        [
            volunteer("v1", windows=MORNING, max_hours_per_week=2),
            need("n1"),
            later,
            need("n2", at=t(-1, 14)),
        ]
    )
    booked = of(AssignmentProposed, out)
    assert [b.need_id for b in booked] == ["n1", "n2"]
    assert booked[1].slot.start.isoformat() == t(0, 10)


def test_other_community_is_not_served(run: Run) -> None:
    out = run([volunteer("v1", windows=MORNING, community="c2"), need("n1")])
    assert not of(AssignmentProposed, out)
    out = run(
        [
            volunteer("v1", windows=MORNING, community="c2", serves_communities=["c2", "c1"]),
            need("n1"),
        ]
    )
    assert of(AssignmentProposed, out)


def test_replay_prepares_texts_in_batches(run: Run, skills: KeywordSkillModel) -> None:
    run([volunteer("v1", windows=MORNING), need("n1"), need("n2")])
    assert skills.prepared == [(2, 1)]


class _SureOrNot(KeywordSkillModel):
    """A profile that says 略懂 ("know a little") is placed in its type with a weak yes."""

    def place_volunteer(self, skills: str) -> Mapping[str, float]:
        return dict.fromkeys(self._types(skills), 0.4 if "略懂" in skills else 0.95)


@pytest.mark.parametrize("skills", [_SureOrNot(DEFAULT_KEYWORDS)])
def test_a_clear_fit_outranks_a_weak_one_that_is_idler_and_earlier(run: Run) -> None:
    """The placer admits a type on a weak yes (a keyword, a near-yes margin) to find
    volunteers; when a clear fit can also take the need, it should, even if the weak one
    has more free hours and an earlier slot."""
    out = run(
        [
            volunteer("v1", "电工", windows=MORNING, max_hours_per_week=2),
            need("n1", duration_minutes=90),
            volunteer("v2", "略懂电", windows=MORNING, max_hours_per_week=2, at=t(-1, 13)),
            need("n2", duration_minutes=30, at=t(-1, 14)),
        ]
    )
    booked = {b.need_id: b.volunteer_id for b in of(AssignmentProposed, out)}
    assert booked == {"n1": "v1", "n2": "v1"}
