"""An independent check of the six booking rules over a replay's inputs and outputs.

This is the oracle of the property tests and of ``evaluate``: it re-derives every
constraint from the events alone, sharing no code with the engine's booking path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemas.events import (
    AssignmentCancelled,
    AssignmentProposed,
    InputEvent,
    NeedCancelled,
    NeedPosted,
    OutputEvent,
    VolunteerAvailable,
    VolunteerWithdrawn,
)

_BJ_OFFSET = timedelta(hours=8)


@dataclass(frozen=True)
class Violation:
    rule: int
    assignment_id: str
    detail: str


@dataclass
class _World:
    profiles: dict[str, VolunteerAvailable] = field(default_factory=dict)
    withdrawn: set[str] = field(default_factory=set)
    needs: dict[str, NeedPosted] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    active: dict[str, AssignmentProposed] = field(default_factory=dict)


def check_rules(
    steps: Iterable[tuple[InputEvent | None, list[OutputEvent]]],
    fits: Mapping[str, Iterable[str]] | None = None,
) -> list[Violation]:
    """Violations of rules 1-5 (and 6 when ``fits`` labels are given)."""
    world = _World()
    violations: list[Violation] = []
    for event, outputs in steps:
        if event is not None:
            _apply_input(world, event)
        for output in outputs:
            if isinstance(output, AssignmentCancelled):
                world.active.pop(output.assignment_id, None)
            elif isinstance(output, AssignmentProposed):
                assert event is not None
                violations += _check_booking(world, output, event.occurred_at, fits)
                world.active[output.assignment_id] = output
    return violations


def _apply_input(world: _World, event: InputEvent) -> None:
    if isinstance(event, VolunteerAvailable):
        world.profiles[event.volunteer_id] = event
        world.withdrawn.discard(event.volunteer_id)
    elif isinstance(event, VolunteerWithdrawn) and event.volunteer_id in world.profiles:
        world.withdrawn.add(event.volunteer_id)
    elif isinstance(event, NeedPosted):
        world.needs.setdefault(event.need_id, event)
    elif isinstance(event, NeedCancelled) and event.need_id in world.needs:
        world.cancelled.add(event.need_id)


def _check_booking(
    world: _World,
    booking: AssignmentProposed,
    now: datetime,
    fits: Mapping[str, Iterable[str]] | None,
) -> list[Violation]:
    found: list[Violation] = []

    def fail(rule: int, detail: str) -> None:
        found.append(Violation(rule, booking.assignment_id, detail))

    need = world.needs.get(booking.need_id)
    profile = world.profiles.get(booking.volunteer_id)
    if need is None or profile is None:
        fail(1, "booking for an unknown need or volunteer")
        return found
    start, end = booking.slot.start, booking.slot.end
    if not (need.window.start <= start and end <= need.window.end):
        fail(1, "slot outside the need's window")
    if not any(w.start <= start and end <= w.end for w in profile.availability):
        fail(1, "slot outside every availability window")
    if end - start != timedelta(minutes=need.duration_minutes):
        fail(1, "slot length differs from duration_minutes")
    if start < now:
        fail(1, "slot starts before the handled event occurred")
    mine = [b for b in world.active.values() if b.volunteer_id == booking.volunteer_id]
    if any(start < b.slot.end and b.slot.start < end for b in mine):
        fail(2, "overlaps another booking of the volunteer")
    if _over_cap([*mine, booking], profile.max_hours_per_week * 60):
        fail(3, "weekly hours over max_hours_per_week")
    if need.community not in profile.served:
        fail(4, "community not in serves_communities")
    if booking.volunteer_id in world.withdrawn:
        fail(5, "volunteer withdrawn")
    if booking.need_id in world.cancelled:
        fail(5, "need cancelled")
    if fits is not None and booking.volunteer_id not in set(fits.get(booking.need_id, ())):
        fail(6, "volunteer's skills do not fit the need")
    return found


def _over_cap(bookings: list[AssignmentProposed], cap_minutes: float) -> bool:
    per_week: dict[tuple[int, int], float] = defaultdict(float)
    for booking in bookings:
        minute = booking.slot.start
        while minute < booking.slot.end:
            iso = (minute.astimezone(UTC) + _BJ_OFFSET).isocalendar()
            step = min(booking.slot.end, minute + timedelta(minutes=1))
            per_week[(iso.year, iso.week)] += (step - minute).total_seconds() / 60
            minute = step
    return any(total > cap_minutes + 1e-6 for total in per_week.values())
