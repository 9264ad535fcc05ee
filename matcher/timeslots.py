"""Time arithmetic for booking: ISO weeks in Beijing time and the earliest free slot.

All functions take aware datetimes and compare instants; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final

BEIJING: Final = timezone(timedelta(hours=8))
SLOT_GRID: Final = timedelta(minutes=5)
_EPOCH: Final = datetime(2000, 1, 3, tzinfo=BEIJING)  # a Monday 00:00 in Beijing
_EPSILON_MINUTES: Final = 1e-6

Interval = tuple[datetime, datetime]
WeekKey = tuple[int, int]


@dataclass(frozen=True, slots=True)
class SlotSearch:
    """What the volunteer's calendar allows for one need."""

    slot: Interval | None
    overlaps_window: bool  # some availability window holds a slot of that length
    free_of_bookings: bool  # ... and one of those is not taken by another booking


def week_of(moment: datetime) -> WeekKey:
    iso = moment.astimezone(BEIJING).isocalendar()
    return (iso.year, iso.week)


def week_start(moment: datetime) -> datetime:
    local = moment.astimezone(BEIJING)
    monday = local - timedelta(days=local.weekday())
    return monday.replace(hour=0, minute=0, second=0, microsecond=0)


def minutes_by_week(start: datetime, end: datetime) -> dict[WeekKey, float]:
    """Split an interval's minutes over the ISO weeks (Beijing time) it touches."""
    result: dict[WeekKey, float] = {}
    cursor = start
    while cursor < end:
        boundary = week_start(cursor) + timedelta(days=7)
        piece_end = min(end, boundary)
        key = week_of(cursor)
        result[key] = result.get(key, 0.0) + (piece_end - cursor).total_seconds() / 60.0
        cursor = piece_end
    return result


def weekly_minutes(bookings: Iterable[Interval]) -> dict[WeekKey, float]:
    totals: dict[WeekKey, float] = {}
    for start, end in bookings:
        for key, minutes in minutes_by_week(start, end).items():
            totals[key] = totals.get(key, 0.0) + minutes
    return totals


def fits_cap(
    start: datetime, end: datetime, used: Mapping[WeekKey, float], cap_minutes: float
) -> bool:
    return all(
        used.get(key, 0.0) + minutes <= cap_minutes + _EPSILON_MINUTES
        for key, minutes in minutes_by_week(start, end).items()
    )


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


def round_up(moment: datetime, grid: timedelta = SLOT_GRID) -> datetime:
    """Next grid point at or after ``moment``: a slot 'from now' starts on a round time."""
    offset = (moment - _EPOCH) % grid
    return moment if not offset else moment + (grid - offset)


def find_slot(
    *,
    window: Interval,
    duration: timedelta,
    not_before: datetime,
    availability: Sequence[Interval],
    busy: Sequence[Interval],
    cap_minutes: float,
) -> SlotSearch:
    """Earliest slot of exactly ``duration`` inside ``window`` and one availability window,
    not before ``not_before``, clear of ``busy`` and within the weekly cap.

    The earliest feasible start is always one of: the lower bound, the end of a busy
    interval, or the start of an ISO week (where the cap resets); so only those are tried.
    """
    earliest = round_up(not_before)
    used = weekly_minutes(busy)
    overlaps_window = False
    free_of_bookings = False
    for avail_start, avail_end in sorted(availability):
        low = max(window[0], avail_start, earliest)
        high = min(window[1], avail_end) - duration
        if low > high:
            continue
        overlaps_window = True
        for start in _candidate_starts(low, high, busy):
            end = start + duration
            if any(overlaps(start, end, b_start, b_end) for b_start, b_end in busy):
                continue
            free_of_bookings = True
            if fits_cap(start, end, used, cap_minutes):
                return SlotSearch((start, end), True, True)
    return SlotSearch(None, overlaps_window, free_of_bookings)


def _candidate_starts(low: datetime, high: datetime, busy: Sequence[Interval]) -> list[datetime]:
    candidates = {low}
    candidates.update(round_up(end) for _, end in busy if low < end <= high)
    monday = week_start(low) + timedelta(days=7)
    while monday <= high:
        candidates.add(monday)
        monday += timedelta(days=7)
    return sorted(c for c in candidates if low <= c <= high)
