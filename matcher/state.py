"""The matcher's state, behind a small ``Store`` protocol.

The engine only talks to a ``Store``: replay uses ``InMemoryStore``; the live service
uses a Redis store with the same semantics (``try_book`` is its one atomic step).
Records hold ids, times and placements, never a resident's text or contact.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

from matcher.timeslots import Interval, fits_cap, overlaps, weekly_minutes

BookingStatus = Literal["active", "accepted", "completed", "cancelled", "declined"]
HOLDING: frozenset[BookingStatus] = frozenset({"active", "accepted", "completed"})
URGENCY_RANK = {"critical": 0, "high": 1, "normal": 2, "low": 3}


@dataclass(frozen=True, slots=True)
class VolunteerRecord:
    volunteer_id: str
    kind: str
    community: str
    served: tuple[str, ...]
    availability: tuple[Interval, ...]
    cap_minutes: float
    skills: dict[str, float]  # service type -> confidence
    withdrawn: bool = False


@dataclass(frozen=True, slots=True)
class NeedRecord:
    need_id: str
    community: str
    window: Interval
    duration_minutes: int
    headcount: int
    urgency: str
    posted_at: datetime
    posted_event_id: str
    types: tuple[tuple[str, float], ...]  # ranked service types with confidence
    cancelled: bool = False
    declined_by: frozenset[str] = frozenset()
    last_unmatched: tuple[int, str, bool] | None = None
    # Types that may fill the headcount beyond the first person (organisers of a talk).
    support: tuple[tuple[str, float], ...] = ()

    @property
    def latest_start(self) -> datetime:
        return self.window[1] - timedelta(minutes=self.duration_minutes)

    @property
    def wanted_types(self) -> list[str]:
        """Every type whose volunteers could fill some of the headcount."""
        support = [t for t, _ in self.support] if self.headcount > 1 else []
        return [*(t for t, _ in self.types), *support]

    @property
    def priority(self) -> tuple[int, datetime, str]:
        return (URGENCY_RANK.get(self.urgency, 2), self.posted_at, self.need_id)


@dataclass(frozen=True, slots=True)
class Booking:
    assignment_id: str
    need_id: str
    volunteer_id: str
    start: datetime
    end: datetime
    status: BookingStatus = "active"
    rating: int | None = None

    @property
    def holds(self) -> bool:
        return self.status in HOLDING


class Store(Protocol):
    """Everything the engine reads and writes. Implementations must keep ``try_book``
    atomic: two workers must never both book overlapping time or past the cap."""

    def seen(self, event_id: str) -> bool: ...
    def remember(self, event_id: str) -> None: ...

    def volunteer(self, volunteer_id: str) -> VolunteerRecord | None: ...
    def volunteers(self, volunteer_ids: Iterable[str]) -> dict[str, VolunteerRecord]:
        """Many at once (one round trip for a remote store); unknown ids are left out."""
        ...

    def save_volunteer(self, record: VolunteerRecord) -> None: ...
    def volunteers_for(self, community: str, service_type: str) -> list[str]: ...

    def need(self, need_id: str) -> NeedRecord | None: ...
    def save_need(self, record: NeedRecord) -> None: ...

    def bookings_of_volunteer(self, volunteer_id: str) -> list[Booking]: ...
    def bookings_of_need(self, need_id: str) -> list[Booking]: ...
    def try_book(self, booking: Booking, cap_minutes: float) -> bool: ...
    def set_booking(self, booking: Booking) -> None: ...

    def add_pending(self, need: NeedRecord) -> None: ...
    def remove_pending(self, need_id: str) -> None: ...
    def pending_for(self, community: str, service_types: Iterable[str]) -> list[str]: ...
    def pending_expired(self, now: datetime) -> list[str]: ...


@dataclass
class InMemoryStore:
    """A ``Store`` in plain dicts, for replay and tests. Single-threaded."""

    _seen: set[str] = field(default_factory=set)
    _volunteers: dict[str, VolunteerRecord] = field(default_factory=dict)
    _index: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _needs: dict[str, NeedRecord] = field(default_factory=dict)
    _bookings: dict[str, Booking] = field(default_factory=dict)
    _by_volunteer: dict[str, list[str]] = field(default_factory=dict)
    _by_need: dict[str, list[str]] = field(default_factory=dict)
    _pending: dict[str, NeedRecord] = field(default_factory=dict)
    _pending_index: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # Entries stay after a need leaves pending; pending_expired skips those lazily.
    _expiry_heap: list[tuple[datetime, str]] = field(default_factory=list)

    def seen(self, event_id: str) -> bool:
        return event_id in self._seen

    def remember(self, event_id: str) -> None:
        self._seen.add(event_id)

    def volunteer(self, volunteer_id: str) -> VolunteerRecord | None:
        return self._volunteers.get(volunteer_id)

    def volunteers(self, volunteer_ids: Iterable[str]) -> dict[str, VolunteerRecord]:
        return {v: self._volunteers[v] for v in volunteer_ids if v in self._volunteers}

    def save_volunteer(self, record: VolunteerRecord) -> None:
        old = self._volunteers.get(record.volunteer_id)
        if old is not None:
            for key in _index_keys(old):
                self._index.get(key, set()).discard(old.volunteer_id)
        self._volunteers[record.volunteer_id] = record
        for key in _index_keys(record):
            self._index.setdefault(key, set()).add(record.volunteer_id)

    def volunteers_for(self, community: str, service_type: str) -> list[str]:
        return sorted(self._index.get((community, service_type), ()))

    def need(self, need_id: str) -> NeedRecord | None:
        return self._needs.get(need_id)

    def save_need(self, record: NeedRecord) -> None:
        self._needs[record.need_id] = record
        if record.need_id in self._pending:
            self._pending[record.need_id] = record

    def bookings_of_volunteer(self, volunteer_id: str) -> list[Booking]:
        return [self._bookings[a] for a in self._by_volunteer.get(volunteer_id, ())]

    def bookings_of_need(self, need_id: str) -> list[Booking]:
        return [self._bookings[a] for a in self._by_need.get(need_id, ())]

    def try_book(self, booking: Booking, cap_minutes: float) -> bool:
        if not calendar_allows(
            booking, self.bookings_of_volunteer(booking.volunteer_id), cap_minutes
        ):
            return False
        self._bookings[booking.assignment_id] = booking
        self._by_volunteer.setdefault(booking.volunteer_id, []).append(booking.assignment_id)
        self._by_need.setdefault(booking.need_id, []).append(booking.assignment_id)
        return True

    def set_booking(self, booking: Booking) -> None:
        self._bookings[booking.assignment_id] = booking

    def add_pending(self, need: NeedRecord) -> None:
        self.remove_pending(need.need_id)
        self._pending[need.need_id] = need
        for service_type in need.wanted_types:
            key = (need.community, service_type)
            self._pending_index.setdefault(key, set()).add(need.need_id)
        heapq.heappush(self._expiry_heap, (need.latest_start, need.need_id))

    def remove_pending(self, need_id: str) -> None:
        need = self._pending.pop(need_id, None)
        if need is None:
            return
        for service_type in need.wanted_types:
            self._pending_index.get((need.community, service_type), set()).discard(need_id)

    def pending_for(self, community: str, service_types: Iterable[str]) -> list[str]:
        ids: set[str] = set()
        for service_type in service_types:
            ids.update(self._pending_index.get((community, service_type), ()))
        return sorted(ids, key=lambda n: self._pending[n].priority)

    def pending_expired(self, now: datetime) -> list[str]:
        expired: set[str] = set()
        while self._expiry_heap and self._expiry_heap[0][0] < now:
            _, need_id = heapq.heappop(self._expiry_heap)
            if need_id in self._pending:
                expired.add(need_id)
        return sorted(expired, key=lambda n: self._pending[n].priority)


def _index_keys(record: VolunteerRecord) -> list[tuple[str, str]]:
    if record.withdrawn:
        return []
    return [(c, t) for c in record.served for t in record.skills]


def calendar_allows(booking: Booking, others: Iterable[Booking], cap_minutes: float) -> bool:
    """Rules 2 and 3 for one new booking: no overlap with the volunteer's bookings that
    still hold, and the weekly cap kept in every ISO week the slot touches."""
    held = [b for b in others if b.holds]
    if any(overlaps(booking.start, booking.end, b.start, b.end) for b in held):
        return False
    used = weekly_minutes((b.start, b.end) for b in held)
    return fits_cap(booking.start, booking.end, used, cap_minutes)


def with_status(booking: Booking, status: BookingStatus, rating: int | None = None) -> Booking:
    return replace(booking, status=status, rating=rating if rating is not None else booking.rating)
