"""The decision logic: one input event in, the events to publish out.

Pure and deterministic: the only clock is the handled event's ``occurred_at``, state is
reached through a ``Store``, skills through a ``SkillModel``. Replay and the live worker
both drive this same ``Engine``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from matcher.exceptions import UnusableEventError
from matcher.skills import SkillModel, skill_fit
from matcher.state import Booking, NeedRecord, Store, VolunteerRecord, with_status
from matcher.timeslots import BEIJING, Interval, find_slot, round_up, weekly_minutes
from schemas.events import (
    AssignmentAccepted,
    AssignmentCancelled,
    AssignmentCompleted,
    AssignmentDeclined,
    AssignmentProposed,
    CancelReason,
    InputEvent,
    NeedCancelled,
    NeedPosted,
    NeedUnmatched,
    OutputEvent,
    Slot,
    UnmatchedReason,
    VolunteerAvailable,
    VolunteerWithdrawn,
)

ENGINE_VERSION = "2"  # 2: skill leads the ranking (ScoreWeights)


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    """How the parts of a booking's score add up (they sum to 1).

    Skill leads: a volunteer whose type rests on a weak yes of the placer (a named
    keyword, a near-yes margin) should take a need only when no clear fit can, and
    load and time should not outweigh that. At 0.6 / 0.25 / 0.15 an idle, weakly placed
    volunteer with an earlier slot beat a clear fit; 0.8 / 0.125 / 0.075 (load and time
    in the same ratio) removed one wrong booking in the dev probe weeks, changed none on
    the tune and dev weeks, and 0.75-0.9 all gave the same (BENCHMARKS.md)."""

    skill: float = 0.8
    load: float = 0.125
    time: float = 0.075


@dataclass(frozen=True, slots=True)
class _Trigger:
    """The input event being handled: the clock and the seed of every output id."""

    event_id: str
    occurred_at: datetime

    @property
    def now(self) -> datetime:
        return round_up(self.occurred_at)

    def output_id(self, *parts: str) -> str:
        digest = hashlib.sha256("\x1f".join((self.event_id, *parts)).encode()).hexdigest()
        return f"o-{digest[:32]}"


@dataclass(frozen=True, slots=True)
class _Candidate:
    volunteer: VolunteerRecord
    service_type: str
    slot: Interval
    score: float
    reasons: dict[str, float]


def assignment_id_for(need_id: str, volunteer_id: str) -> str:
    """Stable: a volunteer is booked at most once per need, so the pair names the booking."""
    digest = hashlib.sha256(f"{need_id}\x1f{volunteer_id}".encode()).hexdigest()
    return f"a-{digest[:24]}"


class Engine:
    def __init__(
        self, store: Store, skills: SkillModel, *, weights: ScoreWeights | None = None
    ) -> None:
        self._store = store
        self._skills = skills
        self._weights = weights or ScoreWeights()
        self.version = f"volmatch-{ENGINE_VERSION}+{skills.version}"

    # --- entry point ------------------------------------------------------------------

    def prepare(self, need_texts: list[str], skill_texts: list[str]) -> None:
        """Let the skill model place many texts in one batch before they are handled."""
        self._skills.prepare(need_texts, skill_texts)

    def handle(self, event: InputEvent) -> list[OutputEvent]:
        """Apply one event; raises ``UnusableEventError`` for events to dead-letter."""
        if self._store.seen(event.event_id):
            return []
        trigger = _Trigger(event.event_id, event.occurred_at)
        try:
            outputs = self._expire_pending(trigger)
            outputs += self._dispatch(event, trigger)
        finally:
            # A rejected event is remembered too, so a redelivery is not dead-lettered twice.
            self._store.remember(event.event_id)
        return outputs

    def _dispatch(self, event: InputEvent, trigger: _Trigger) -> list[OutputEvent]:
        if isinstance(event, VolunteerAvailable):
            return self._on_volunteer_available(event, trigger)
        if isinstance(event, VolunteerWithdrawn):
            return self._on_volunteer_withdrawn(event)
        if isinstance(event, NeedPosted):
            return self._on_need_posted(event, trigger)
        if isinstance(event, NeedCancelled):
            return self._on_need_cancelled(event, trigger)
        if isinstance(event, AssignmentDeclined):
            return self._on_declined(event, trigger)
        return self._on_accepted_or_completed(event)

    # --- volunteers -------------------------------------------------------------------

    def _on_volunteer_available(
        self, event: VolunteerAvailable, trigger: _Trigger
    ) -> list[OutputEvent]:
        record = VolunteerRecord(
            volunteer_id=event.volunteer_id,
            kind=event.kind,
            community=event.community,
            served=event.served,
            availability=tuple(sorted((w.start, w.end) for w in event.availability)),
            cap_minutes=event.max_hours_per_week * 60.0,
            skills=dict(self._skills.place_volunteer(event.skills)),
        )
        self._store.save_volunteer(record)
        return self._retry_pending_for(record, trigger)

    def _on_volunteer_withdrawn(self, event: VolunteerWithdrawn) -> list[OutputEvent]:
        record = self._store.volunteer(event.volunteer_id)
        if record is None:
            raise UnusableEventError(
                f"field 'volunteer_id': volunteer {event.volunteer_id!r} is not known",
                field="volunteer_id",
            )
        self._store.save_volunteer(replace(record, withdrawn=True))
        return []

    # --- needs ------------------------------------------------------------------------

    def _on_need_posted(self, event: NeedPosted, trigger: _Trigger) -> list[OutputEvent]:
        if self._store.need(event.need_id) is not None:
            raise UnusableEventError(
                f"field 'need_id': need {event.need_id!r} was already posted; "
                "cancel it and post a new need_id to change it",
                field="need_id",
            )
        placement = self._skills.place_need(event.text)
        need = NeedRecord(
            need_id=event.need_id,
            community=event.community,
            window=(event.window.start, event.window.end),
            duration_minutes=event.duration_minutes,
            headcount=event.headcount,
            urgency=event.urgency,
            posted_at=event.occurred_at,
            posted_event_id=event.event_id,
            types=placement.types,
            support=placement.support,
        )
        self._store.save_need(need)
        return self._match(need, trigger)

    def _on_need_cancelled(self, event: NeedCancelled, trigger: _Trigger) -> list[OutputEvent]:
        need = self._require_need(event.need_id)
        if need.cancelled:
            return []
        self._store.save_need(replace(need, cancelled=True))
        self._store.remove_pending(need.need_id)
        outputs: list[OutputEvent] = []
        freed: list[str] = []
        for booking in self._store.bookings_of_need(need.need_id):
            if booking.status != "active" and booking.status != "accepted":
                continue
            self._store.set_booking(with_status(booking, "cancelled"))
            outputs.append(self._cancelled(booking, "need_cancelled", trigger))
            freed.append(booking.volunteer_id)
        return outputs + self._retry_after_freeing(freed, trigger)

    def _require_need(self, need_id: str) -> NeedRecord:
        need = self._store.need(need_id)
        if need is None:
            raise UnusableEventError(
                f"field 'need_id': need {need_id!r} is not known", field="need_id"
            )
        return need

    # --- responses --------------------------------------------------------------------

    def _held_booking(
        self, event: AssignmentAccepted | AssignmentDeclined | AssignmentCompleted
    ) -> Booking:
        found = [
            b
            for b in self._store.bookings_of_need(event.need_id)
            if b.volunteer_id == event.volunteer_id and b.holds
        ]
        if not found:
            raise UnusableEventError(
                f"no booking is held for need {event.need_id!r} and volunteer "
                f"{event.volunteer_id!r}",
                field="need_id",
            )
        booking = found[0]
        if event.assignment_id is not None and event.assignment_id != booking.assignment_id:
            raise UnusableEventError(
                f"field 'assignment_id': {event.assignment_id!r} does not name the booking "
                f"of need {event.need_id!r} and volunteer {event.volunteer_id!r}",
                field="assignment_id",
            )
        return booking

    def _on_accepted_or_completed(
        self, event: AssignmentAccepted | AssignmentCompleted
    ) -> list[OutputEvent]:
        booking = self._held_booking(event)
        if isinstance(event, AssignmentCompleted):
            self._store.set_booking(with_status(booking, "completed", event.rating))
        elif booking.status == "active":
            self._store.set_booking(with_status(booking, "accepted"))
        return []

    def _on_declined(self, event: AssignmentDeclined, trigger: _Trigger) -> list[OutputEvent]:
        booking = self._held_booking(event)
        if booking.status == "completed":
            raise UnusableEventError(
                f"booking {booking.assignment_id!r} is already completed and cannot be declined",
                field="type",
            )
        self._store.set_booking(with_status(booking, "declined"))
        need = self._require_need(event.need_id)
        need = replace(need, declined_by=need.declined_by | {event.volunteer_id})
        self._store.save_need(need)
        outputs: list[OutputEvent] = [self._cancelled(booking, "declined", trigger)]
        outputs += self._match(need, trigger)
        return outputs + self._retry_after_freeing([event.volunteer_id], trigger)

    # --- matching ---------------------------------------------------------------------

    def _match(self, need: NeedRecord, trigger: _Trigger) -> list[OutputEvent]:
        """Book up to the missing headcount; report what stays unbooked."""
        if need.cancelled:
            return []
        held = [b for b in self._store.bookings_of_need(need.need_id) if b.holds]
        missing = need.headcount - len(held)
        if missing <= 0:
            self._store.remove_pending(need.need_id)
            return []
        if need.latest_start < trigger.now:
            return self._give_up(need, missing, trigger)
        taken = {b.volunteer_id for b in self._store.bookings_of_need(need.need_id)}
        outputs = self._book(need, need.types, taken, missing, trigger)
        missing -= len(outputs)
        if missing > 0 and need.headcount > 1 and need.support:
            # The extra hands of a talk may be organisers, but one place stays for the
            # person the need is really about.
            room = need.headcount - 1 - self._support_held(need, held)
            support = self._book(need, need.support, taken, min(missing, room), trigger)
            outputs += support
            missing -= len(support)
        if missing == 0:
            self._store.remove_pending(need.need_id)
            return outputs
        return outputs + self._report_unmatched(need, missing, trigger)

    def _book(
        self,
        need: NeedRecord,
        types: tuple[tuple[str, float], ...],
        taken: set[str],
        wanted: int,
        trigger: _Trigger,
    ) -> list[OutputEvent]:
        """Book up to ``wanted`` of the best candidates fitting ``types``; adds to ``taken``."""
        outputs: list[OutputEvent] = []
        for candidate in self._ranked_candidates(need, types, taken, trigger):
            if len(outputs) >= wanted:
                break
            proposed = self._try_book(need, candidate, trigger)
            if proposed is not None:
                outputs.append(proposed)
                taken.add(candidate.volunteer.volunteer_id)
        return outputs

    def _support_held(self, need: NeedRecord, held: list[Booking]) -> int:
        primary = {t for t, _ in need.types}
        count = 0
        for booking in held:
            volunteer = self._store.volunteer(booking.volunteer_id)
            if volunteer is not None and not primary & volunteer.skills.keys():
                count += 1
        return count

    def _eligible(
        self, need: NeedRecord, taken: set[str], types: tuple[tuple[str, float], ...] = ()
    ) -> list[tuple[VolunteerRecord, float, str]]:
        """Volunteers who serve the community and fit one of ``types`` (by default the
        need's own)."""
        types = types or need.types
        ids: dict[str, None] = {}
        for service_type, _ in types:
            for volunteer_id in self._store.volunteers_for(need.community, service_type):
                if volunteer_id not in taken and volunteer_id not in need.declined_by:
                    ids[volunteer_id] = None
        records = self._store.volunteers(ids)  # one read for all candidates
        found: list[tuple[VolunteerRecord, float, str]] = []
        for volunteer_id in ids:
            volunteer = records.get(volunteer_id)
            if volunteer is None or volunteer.withdrawn:
                continue
            fit, fit_type = skill_fit(types, volunteer.skills)
            if fit_type is not None:
                found.append((volunteer, fit, fit_type))
        return found

    def _ranked_candidates(
        self,
        need: NeedRecord,
        types: tuple[tuple[str, float], ...],
        taken: set[str],
        trigger: _Trigger,
    ) -> list[_Candidate]:
        candidates = []
        for volunteer, fit, service_type in self._eligible(need, taken, types):
            candidate = self._score(need, volunteer, fit, service_type, trigger)
            if candidate is not None:
                candidates.append(candidate)
        candidates.sort(key=lambda c: (-c.score, c.volunteer.volunteer_id))
        return candidates

    def _score(
        self,
        need: NeedRecord,
        volunteer: VolunteerRecord,
        fit: float,
        service_type: str,
        trigger: _Trigger,
    ) -> _Candidate | None:
        busy = self._busy(volunteer.volunteer_id)
        search = find_slot(
            window=need.window,
            duration=timedelta(minutes=need.duration_minutes),
            not_before=trigger.occurred_at,
            availability=volunteer.availability,
            busy=busy,
            cap_minutes=volunteer.cap_minutes,
        )
        if search.slot is None:
            return None
        start, end = search.slot
        earliest = max(need.window[0], trigger.now)
        span = max((need.latest_start - earliest).total_seconds(), 1.0)
        time_fit = 1.0 - min(max((start - earliest).total_seconds() / span, 0.0), 1.0)
        used = sum(weekly_minutes(busy).values()) if busy else 0.0
        load = 1.0 - min(used / volunteer.cap_minutes, 1.0) if volunteer.cap_minutes else 0.0
        weights = self._weights
        score = weights.skill * fit + weights.load * load + weights.time * time_fit
        reasons = {
            "skill": _r(fit),
            "time": _r(time_fit),
            "load": _r(load),
            # How sure the placement of each text in the service type was: coordinators
            # see whether a booking rests on a clear request and a clear profile.
            "need_placement": _r(_confidence(need.types + need.support, service_type)),
            "volunteer_placement": _r(volunteer.skills.get(service_type, 0.0)),
        }
        return _Candidate(volunteer, service_type, (start, end), _r(score), reasons)

    def _busy(self, volunteer_id: str) -> list[Interval]:
        return [
            (b.start, b.end) for b in self._store.bookings_of_volunteer(volunteer_id) if b.holds
        ]

    def _try_book(
        self, need: NeedRecord, candidate: _Candidate, trigger: _Trigger
    ) -> AssignmentProposed | None:
        volunteer = candidate.volunteer
        start, end = candidate.slot
        booking = Booking(
            assignment_id=assignment_id_for(need.need_id, volunteer.volunteer_id),
            need_id=need.need_id,
            volunteer_id=volunteer.volunteer_id,
            start=start,
            end=end,
        )
        if not self._store.try_book(booking, volunteer.cap_minutes):
            return None  # another worker took the time first: try the next candidate
        return AssignmentProposed(
            event_id=trigger.output_id("proposed", need.need_id, volunteer.volunteer_id),
            occurred_at=_bj(trigger.occurred_at),
            assignment_id=booking.assignment_id,
            need_id=need.need_id,
            volunteer_id=volunteer.volunteer_id,
            community=need.community,
            slot=Slot(start=_bj(start), end=_bj(end)),
            score=candidate.score,
            reasons=candidate.reasons,
            matcher_version=self.version,
            service_type=candidate.service_type,
        )

    # --- what could not be booked -----------------------------------------------------

    def _report_unmatched(
        self, need: NeedRecord, missing: int, trigger: _Trigger
    ) -> list[OutputEvent]:
        reason = self._main_obstacle(need, trigger)
        # A need placed in no service type can never be matched: we do not keep trying it.
        pending = bool(need.types)
        if pending:
            self._store.add_pending(need)
        else:
            self._store.remove_pending(need.need_id)
        return self._unmatched(need, missing, reason, pending, trigger)

    def _give_up(self, need: NeedRecord, missing: int, trigger: _Trigger) -> list[OutputEvent]:
        self._store.remove_pending(need.need_id)
        return self._unmatched(need, missing, "expired", False, trigger)

    def _unmatched(
        self,
        need: NeedRecord,
        missing: int,
        reason: UnmatchedReason,
        pending: bool,
        trigger: _Trigger,
    ) -> list[OutputEvent]:
        state = (missing, reason, pending)
        if need.last_unmatched == state:
            return []  # nothing new for coordinators: do not repeat ourselves
        self._store.save_need(replace(need, last_unmatched=state))
        return [
            NeedUnmatched(
                event_id=trigger.output_id("unmatched", need.need_id, str(missing), reason),
                occurred_at=_bj(trigger.occurred_at),
                need_id=need.need_id,
                missing=missing,
                reason=reason,
                pending=pending,
                service_type=need.types[0][0] if need.types else None,
                community=need.community,
            )
        ]

    def _main_obstacle(self, need: NeedRecord, trigger: _Trigger) -> UnmatchedReason:
        taken = {b.volunteer_id for b in self._store.bookings_of_need(need.need_id)}
        eligible = self._eligible(need, taken)
        if not eligible:
            return "no_skill_match"
        duration = timedelta(minutes=need.duration_minutes)
        searches = [
            find_slot(
                window=need.window,
                duration=duration,
                not_before=trigger.occurred_at,
                availability=v.availability,
                busy=self._busy(v.volunteer_id),
                cap_minutes=v.cap_minutes,
            )
            for v, _, _ in eligible
        ]
        if not any(s.free_of_bookings for s in searches):
            return "no_time_overlap"
        return "no_capacity"

    def _expire_pending(self, trigger: _Trigger) -> list[OutputEvent]:
        outputs: list[OutputEvent] = []
        for need_id in self._store.pending_expired(trigger.now):
            need = self._store.need(need_id)
            if need is None:
                continue
            missing = need.headcount - sum(
                1 for b in self._store.bookings_of_need(need_id) if b.holds
            )
            if missing > 0:
                outputs += self._give_up(need, missing, trigger)
            else:
                self._store.remove_pending(need_id)
        return outputs

    # --- retries ----------------------------------------------------------------------

    def _retry_pending_for(
        self, volunteer: VolunteerRecord, trigger: _Trigger
    ) -> list[OutputEvent]:
        return self._retry(self._pending_touching([volunteer]), trigger)

    def _retry_after_freeing(
        self, volunteer_ids: Iterable[str], trigger: _Trigger
    ) -> list[OutputEvent]:
        volunteers = [self._store.volunteer(v) for v in dict.fromkeys(volunteer_ids)]
        return self._retry(self._pending_touching([v for v in volunteers if v]), trigger)

    def _pending_touching(self, volunteers: list[VolunteerRecord]) -> list[str]:
        need_ids: dict[str, None] = {}
        for volunteer in volunteers:
            if volunteer.withdrawn:
                continue
            for community in volunteer.served:
                need_ids.update(dict.fromkeys(self._store.pending_for(community, volunteer.skills)))
        needs = [n for n in (self._store.need(i) for i in need_ids) if n is not None]
        return [n.need_id for n in sorted(needs, key=lambda n: n.priority)]

    def _retry(self, need_ids: list[str], trigger: _Trigger) -> list[OutputEvent]:
        outputs: list[OutputEvent] = []
        for need_id in need_ids:
            need = self._store.need(need_id)
            if need is not None:
                outputs += self._match(need, trigger)
        return outputs

    def _cancelled(
        self, booking: Booking, reason: CancelReason, trigger: _Trigger
    ) -> AssignmentCancelled:
        return AssignmentCancelled(
            event_id=trigger.output_id("cancelled", booking.assignment_id),
            occurred_at=_bj(trigger.occurred_at),
            assignment_id=booking.assignment_id,
            need_id=booking.need_id,
            volunteer_id=booking.volunteer_id,
            reason=reason,
        )


def _confidence(types: tuple[tuple[str, float], ...], service_type: str) -> float:
    return next((conf for t, conf in types if t == service_type), 0.0)


def _bj(moment: datetime) -> datetime:
    return moment.astimezone(BEIJING)


def _r(value: float) -> float:
    return round(min(max(value, 0.0), 1.0), 4)
