"""Booking quality against labels: precision, recall and rule violations.

Recall compares with an oracle run of the same engine whose skill model is the labels
themselves, so its bookings are the most correct bookings that the rules allow to this
greedy, first-come matcher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matcher.engine import Engine
from matcher.replay import Line, handle_record
from matcher.rules import Violation, check_rules
from matcher.skills import NeedPlacement, SkillModel
from matcher.state import InMemoryStore
from schemas.codec import parse_input
from schemas.events import (
    AssignmentProposed,
    InputEvent,
    NeedPosted,
    OutputEvent,
    VolunteerAvailable,
)
from schemas.exceptions import InvalidEventError


@dataclass(frozen=True)
class Labels:
    need_types: Mapping[str, Sequence[str]]
    volunteer_types: Mapping[str, Sequence[str]]
    fits: Mapping[str, Sequence[str]]
    language: Mapping[str, str] = field(default_factory=dict)  # id -> zh | en | mixed

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Labels:
        return cls(
            data.get("needs", {}),
            data.get("volunteers", {}),
            data.get("fits", {}),
            data.get("language", {}),
        )

    def pair_language(self, need_id: str, volunteer_id: str) -> str:
        """'same' when both texts are in one language, else 'cross' (mixed counts as both)."""
        a, b = self.language.get(need_id), self.language.get(volunteer_id)
        if a is None or b is None:
            return "unknown"
        return "same" if a == b or "mixed" in (a, b) else "cross"


@dataclass(frozen=True)
class Report:
    bookings: int
    correct: int
    oracle_correct: int
    violations: list[Violation]
    wrong: list[tuple[str, str]]
    missed: list[tuple[str, str]]
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return self.correct / self.bookings if self.bookings else 1.0

    @property
    def recall(self) -> float:
        return min(self.correct / self.oracle_correct, 1.0) if self.oracle_correct else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "bookings": self.bookings,
            "correct": self.correct,
            "oracle_correct": self.oracle_correct,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "violations": len(self.violations),
            "wrong": [f"{n}->{v}" for n, v in self.wrong],
            "missed": [f"{n}->{v}" for n, v in self.missed],
            "by_language": self.by_language,
        }


class OracleSkillModel:
    """Places texts by the labels: the best any skill model could do."""

    version = "oracle"

    def __init__(self, events: Sequence[InputEvent], labels: Labels) -> None:
        self._need: dict[str, tuple[str, ...]] = {}
        self._volunteer: dict[str, tuple[str, ...]] = {}
        for event in events:
            if isinstance(event, NeedPosted):
                self._need[event.text] = tuple(labels.need_types.get(event.need_id, ()))
            elif isinstance(event, VolunteerAvailable):
                types = labels.volunteer_types.get(event.volunteer_id, ())
                self._volunteer[event.skills] = tuple(types)

    def place_need(self, text: str) -> NeedPlacement:
        return NeedPlacement(tuple((t, 1.0) for t in self._need.get(text, ())))

    def place_volunteer(self, skills: str) -> Mapping[str, float]:
        return dict.fromkeys(self._volunteer.get(skills, ()), 1.0)

    def prepare(self, need_texts: Sequence[str], skill_texts: Sequence[str]) -> None:
        return None


def run_steps(
    lines: Sequence[Line], engine: Engine
) -> list[tuple[InputEvent | None, list[OutputEvent]]]:
    steps = []
    for line in lines:
        if line.raw.strip():
            steps.append(
                handle_record(engine, line.raw, topic="replay", partition=0, offset=line.number)
            )
    return steps


def evaluate(lines: Sequence[Line], labels: Labels, skills: SkillModel) -> Report:
    events = _valid_events(lines)
    skills.prepare(
        [e.text for e in events if isinstance(e, NeedPosted)],
        [e.skills for e in events if isinstance(e, VolunteerAvailable)],
    )
    steps = run_steps(lines, Engine(InMemoryStore(), skills))
    oracle_steps = run_steps(lines, Engine(InMemoryStore(), OracleSkillModel(events, labels)))
    booked = _bookings(steps)
    fits = {n: set(v) for n, v in labels.fits.items()}
    wrong = [(n, v) for n, v in booked if v not in fits.get(n, set())]
    oracle = _bookings(oracle_steps)
    booked_set = set(booked)
    missed = [(n, v) for n, v in oracle if not any(b[0] == n for b in booked_set)]
    return Report(
        bookings=len(booked),
        correct=len(booked) - len(wrong),
        oracle_correct=len(oracle),
        violations=check_rules(steps),
        wrong=wrong,
        missed=missed,
        by_language=_by_language(booked, wrong, oracle, labels) if labels.language else {},
    )


def _by_language(
    booked: list[tuple[str, str]],
    wrong: list[tuple[str, str]],
    oracle: list[tuple[str, str]],
    labels: Labels,
) -> dict[str, dict[str, float]]:
    """Precision and recall for same-language and cross-language need-volunteer pairs."""
    result: dict[str, dict[str, float]] = {}
    wrong_set = set(wrong)
    for kind in ("same", "cross"):
        mine = [p for p in booked if labels.pair_language(*p) == kind]
        correct = sum(1 for p in mine if p not in wrong_set)
        best = sum(1 for p in oracle if labels.pair_language(*p) == kind)
        result[kind] = {
            "bookings": len(mine),
            "precision": round(correct / len(mine), 4) if mine else 1.0,
            "recall": round(min(correct / best, 1.0), 4) if best else 1.0,
        }
    return result


def _bookings(
    steps: Sequence[tuple[InputEvent | None, list[OutputEvent]]],
) -> list[tuple[str, str]]:
    return [
        (o.need_id, o.volunteer_id)
        for _, outputs in steps
        for o in outputs
        if isinstance(o, AssignmentProposed)
    ]


def _valid_events(lines: Sequence[Line]) -> list[InputEvent]:
    events = []
    for line in lines:
        if not line.raw.strip():
            continue
        try:
            events.append(parse_input(line.raw))
        except InvalidEventError:
            continue
    return events
