"""Property tests: over random weeks, no booking ever breaks one of the six rules."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matcher.engine import Engine
from matcher.evaluation import run_steps
from matcher.replay import Line
from matcher.rules import check_rules
from matcher.state import InMemoryStore
from schemas.codec import dump_output
from tests.fakes import DEFAULT_KEYWORDS, KeywordSkillModel, line, t

SKILLS = ["电工", "水管工", "医生", "数学老师", "陪伴老人", "电工和水管", "跳舞"]
NEEDS = ["没电了", "水管漏了", "看医生", "数学作业", "陪我妈", "跳舞", "电和水管都坏了"]
COMMUNITIES = ["c1", "c2"]


@st.composite
def windows(draw: st.DrawFn, *, min_len: int = 1, max_len: int = 16) -> tuple[str, str]:
    day = draw(st.integers(0, 7))
    start = draw(st.integers(0, 44))  # half-hours from 00:00
    length = draw(st.integers(min_len, max_len))
    return t(day, 0, start * 30), t(day, 0, (start + length) * 30)


@st.composite
def weeks(draw: st.DrawFn) -> list[dict[str, Any]]:
    n_volunteers = draw(st.integers(1, 6))
    n_needs = draw(st.integers(1, 10))
    events: list[dict[str, Any]] = []
    for i in range(n_volunteers):
        serves = draw(st.lists(st.sampled_from(COMMUNITIES), min_size=1, max_size=2, unique=True))
        events.append(
            {
                "type": "volunteer.available",
                "volunteer_id": f"v{i}",
                "skills": draw(st.sampled_from(SKILLS)),
                "community": serves[0],
                "serves_communities": serves,
                "availability": [
                    {"start": s, "end": e} for s, e in draw(st.lists(windows(), max_size=3))
                ],
                "max_hours_per_week": draw(st.sampled_from([0.5, 1, 2, 4, 12])),
            }
        )
    for i in range(n_needs):
        start, end = draw(windows(min_len=2, max_len=12))
        max_minutes = (len_halfhours := _halfhours(start, end)) * 30
        events.append(
            {
                "type": "need.posted",
                "need_id": f"n{i}",
                "community": draw(st.sampled_from(COMMUNITIES)),
                "text": draw(st.sampled_from(NEEDS)),
                "window": {"start": start, "end": end},
                "duration_minutes": draw(st.integers(15, min(max_minutes, 180))),
                "headcount": draw(st.integers(1, 3)),
                "urgency": draw(st.sampled_from(["low", "normal", "high", "critical"])),
            }
        )
        assert len_halfhours >= 2
    extra = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["decline", "cancel", "withdraw", "update", "accept"]),
                st.integers(0, 9),
                st.integers(0, 5),
            ),
            max_size=8,
        )
    )
    for kind, n, v in extra:
        events.append(_extra(kind, f"n{n % n_needs}", f"v{v % n_volunteers}", events, draw))
    order = draw(st.permutations(range(len(events))))
    clock = draw(st.lists(st.integers(0, 7 * 48), min_size=len(events), max_size=len(events)))
    ordered = [events[i] for i in order]
    for i, (event, half_hours) in enumerate(zip(ordered, sorted(clock), strict=True)):
        event["event_id"] = f"e{i}"
        event["occurred_at"] = t(-1, 0, half_hours * 30)
    return ordered


def _halfhours(start: str, end: str) -> int:
    from datetime import datetime

    return int(
        (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() // 1800
    )


def _extra(
    kind: str, nid: str, vid: str, events: list[dict[str, Any]], draw: st.DrawFn
) -> dict[str, Any]:
    if kind == "decline":
        return {"type": "assignment.declined", "need_id": nid, "volunteer_id": vid}
    if kind == "accept":
        return {"type": "assignment.accepted", "need_id": nid, "volunteer_id": vid}
    if kind == "cancel":
        return {"type": "need.cancelled", "need_id": nid}
    if kind == "withdraw":
        return {"type": "volunteer.withdrawn", "volunteer_id": vid}
    original = next(
        e for e in events if e.get("volunteer_id") == vid and e["type"] == "volunteer.available"
    )
    return {
        **original,
        "availability": [{"start": s, "end": e} for s, e in draw(st.lists(windows(), max_size=3))],
    }


def fits_of(events: list[dict[str, Any]], model: KeywordSkillModel) -> dict[str, set[str]]:
    volunteers = {
        e["volunteer_id"]: set(model.place_volunteer(e["skills"]))
        for e in events
        if e["type"] == "volunteer.available"
    }
    return {
        e["need_id"]: {
            v
            for v, types in volunteers.items()
            if types & {t for t, _ in model.place_need(e["text"]).types}
        }
        for e in events
        if e["type"] == "need.posted"
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weeks())
def test_no_rule_is_ever_broken(events: list[dict[str, Any]]) -> None:
    model = KeywordSkillModel(DEFAULT_KEYWORDS)
    lines = [Line(i, line(e)) for i, e in enumerate(events)]
    steps = run_steps(lines, Engine(InMemoryStore(), model))
    assert check_rules(steps, fits_of(events, model)) == []


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weeks())
def test_replay_is_deterministic(events: list[dict[str, Any]]) -> None:
    lines = [Line(i, line(e)) for i, e in enumerate(events)]

    def once() -> list[str]:
        steps = run_steps(lines, Engine(InMemoryStore(), KeywordSkillModel(DEFAULT_KEYWORDS)))
        return [dump_output(o) for _, outputs in steps for o in outputs]

    assert once() == once()
