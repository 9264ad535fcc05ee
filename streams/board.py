"""The coordinator board: a read model folded from the service's topics.

The board reads what everybody else reads (needs, volunteers, assignments, unmatched
notices, responses) and keeps what a coordinator looks at: open needs and why they are
open, recent assignments and their answers, each community's fill rate, the lag. It
decides nothing; the matcher's outputs are the truth and the board only shows them.

Personal data (a resident's ``contact``, the need's own words, a volunteer's ``name``)
leaves the board only in a view for a coordinator of that need's community.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from schemas.codec import parse_input
from schemas.events import (
    AssignmentAccepted,
    AssignmentCompleted,
    AssignmentDeclined,
    NeedCancelled,
    NeedPosted,
    VolunteerAvailable,
)
from schemas.exceptions import InvalidEventError

if TYPE_CHECKING:  # annotations only: the board stays free of Kafka clients
    from streams.lag import PartitionEntry

Answer = AssignmentAccepted | AssignmentDeclined | AssignmentCompleted
TopicKind = Literal["needs", "volunteers", "assignments", "unmatched", "responses"]
AssignmentStatus = Literal["proposed", "accepted", "declined", "completed", "cancelled"]
# Answers a coordinator may still give to an assignment in each status.
ALLOWED_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "proposed": ("accept", "decline"),
    "accepted": ("decline", "complete"),
}
_HOLDS_A_SEAT = ("proposed", "accepted", "completed")


@dataclass(frozen=True)
class Viewer:
    """Who asks: a coordinator of ``community``, or the district (``community`` None)."""

    community: str | None

    @property
    def is_district(self) -> bool:
        return self.community is None

    def may_see_personal_data_of(self, community: str) -> bool:
        return self.community is not None and self.community == community


@dataclass
class Unmatched:
    missing: int
    reason: str
    pending: bool


@dataclass
class NeedRow:
    need_id: str
    community: str
    text: str
    window_start: datetime
    window_end: datetime
    headcount: int
    urgency: str
    source: str
    contact: dict[str, Any] | None
    cancelled: bool = False
    unmatched: Unmatched | None = None
    service_type: str | None = None
    assignment_ids: list[str] = field(default_factory=list)


@dataclass
class AssignmentRow:
    assignment_id: str
    need_id: str
    volunteer_id: str
    community: str
    slot_start: str
    slot_end: str
    score: float
    reasons: dict[str, float]
    service_type: str | None
    status: AssignmentStatus = "proposed"
    rating: int | None = None
    seq: int = 0

    @property
    def holds_a_seat(self) -> bool:
        return self.status in _HOLDS_A_SEAT

    def actions(self) -> tuple[str, ...]:
        return ALLOWED_ACTIONS.get(self.status, ())


@dataclass(frozen=True)
class VolunteerInfo:
    name: str
    kind: str


class Board:
    """Folds records from the service's topics into what the coordinator page shows."""

    def __init__(self, *, max_needs: int = 20_000, recent_assignments: int = 200) -> None:
        self._max_needs = max_needs
        self._recent = recent_assignments
        self._needs: OrderedDict[str, NeedRow] = OrderedDict()
        self._assignments: dict[str, AssignmentRow] = {}
        self._volunteers: dict[str, VolunteerInfo] = {}
        # The answer to a booking may be read before the booking itself: topics are not
        # ordered with each other. Bounded like the needs: an answer whose booking never
        # appears (the worker dead-letters it) must not stay in memory for ever.
        self._early_answers: OrderedDict[tuple[str, str], list[Answer]] = OrderedDict()
        self._seq = 0
        self.lag: list[PartitionEntry] = []
        self.records_read = 0
        self.caught_up = False

    # -- folding -------------------------------------------------------------------

    def apply(self, kind: TopicKind, raw: bytes) -> None:
        """One record from one of the service's topics; unusable records are skipped
        (the worker dead-letters bad input; the board only shows)."""
        self.records_read += 1
        if kind in ("needs", "volunteers", "responses"):
            self._apply_input(raw)
            return
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if kind == "assignments":
            self._apply_assignment(event)
        elif kind == "unmatched":
            self._apply_unmatched(event)

    def _apply_input(self, raw: bytes) -> None:
        try:
            event = parse_input(raw)
        except InvalidEventError:
            return
        if isinstance(event, NeedPosted):
            self._add_need(event)
        elif isinstance(event, NeedCancelled):
            need = self._needs.get(event.need_id)
            if need is not None:
                need.cancelled = True
        elif isinstance(event, VolunteerAvailable):
            self._volunteers[event.volunteer_id] = VolunteerInfo(event.name, event.kind)
        elif isinstance(event, AssignmentAccepted | AssignmentDeclined | AssignmentCompleted):
            self._apply_answer(event)

    def _add_need(self, event: NeedPosted) -> None:
        if event.need_id in self._needs:
            return  # the worker dead-letters a second need.posted for the same need
        self._needs[event.need_id] = NeedRow(
            need_id=event.need_id,
            community=event.community,
            text=event.text,
            window_start=event.window.start,
            window_end=event.window.end,
            headcount=event.headcount,
            urgency=event.urgency,
            source=event.source,
            contact=event.contact,
        )
        while len(self._needs) > self._max_needs:
            _, oldest = self._needs.popitem(last=False)
            for assignment_id in oldest.assignment_ids:
                self._assignments.pop(assignment_id, None)

    def _apply_assignment(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        assignment_id = str(event.get("assignment_id", ""))
        if kind == "assignment.cancelled":
            row = self._assignments.get(assignment_id)
            if row is not None:
                row.status = "declined" if event.get("reason") == "declined" else "cancelled"
            return
        if kind != "assignment.proposed" or assignment_id in self._assignments:
            return
        need = self._needs.get(str(event.get("need_id", "")))
        slot = event.get("slot") or {}
        self._seq += 1
        row = AssignmentRow(
            assignment_id=assignment_id,
            need_id=str(event.get("need_id", "")),
            volunteer_id=str(event.get("volunteer_id", "")),
            community=str(event.get("community", "")),
            slot_start=str(slot.get("start", "")),
            slot_end=str(slot.get("end", "")),
            score=float(event.get("score", 0.0)),
            reasons={str(k): float(v) for k, v in (event.get("reasons") or {}).items()},
            service_type=event.get("service_type"),
            seq=self._seq,
        )
        self._assignments[assignment_id] = row
        if need is not None:
            need.assignment_ids.append(assignment_id)
            need.service_type = need.service_type or row.service_type
        for answer in self._early_answers.pop((row.need_id, row.volunteer_id), []):
            self._apply_answer(answer)

    def _apply_unmatched(self, event: dict[str, Any]) -> None:
        need = self._needs.get(str(event.get("need_id", "")))
        if need is None:
            return
        need.unmatched = Unmatched(
            missing=int(event.get("missing", 0)),
            reason=str(event.get("reason", "")),
            pending=bool(event.get("pending", False)),
        )
        need.service_type = need.service_type or event.get("service_type")

    def _apply_answer(self, answer: Answer) -> None:
        pair = (answer.need_id, answer.volunteer_id)
        row = self._live_assignment(*pair)
        if row is None:
            self._early_answers.setdefault(pair, []).append(answer)
            while len(self._early_answers) > self._max_needs:
                self._early_answers.popitem(last=False)
            return
        if isinstance(answer, AssignmentAccepted) and row.status == "proposed":
            row.status = "accepted"
        elif isinstance(answer, AssignmentDeclined):
            row.status = "declined"
        elif isinstance(answer, AssignmentCompleted):
            row.status = "completed"
            row.rating = answer.rating

    def _live_assignment(self, need_id: str, volunteer_id: str) -> AssignmentRow | None:
        need = self._needs.get(need_id)
        ids = need.assignment_ids if need is not None else list(self._assignments)
        for assignment_id in reversed(ids):
            row = self._assignments.get(assignment_id)
            if row and row.need_id == need_id and row.volunteer_id == volunteer_id:
                return row
        return None

    # -- reading -------------------------------------------------------------------

    def assignment(self, assignment_id: str) -> AssignmentRow | None:
        return self._assignments.get(assignment_id)

    def set_lag(self, entries: Iterable[PartitionEntry]) -> None:
        self.lag = sorted(entries, key=lambda e: (e["topic"], e["partition"]))

    def view(self, viewer: Viewer, now: datetime) -> dict[str, Any]:
        """What the page shows to ``viewer``: JSON-ready, personal data only where allowed."""
        return {
            "viewer": {
                "community": viewer.community,
                "district": viewer.is_district,
            },
            "generated_at": now.isoformat(),
            "caught_up": self.caught_up,
            "open_needs": self._open_needs(viewer, now),
            "assignments": self._recent_assignments(viewer),
            "fill_rate": self.fill_rates(),
            "lag": list(self.lag),
        }

    def _visible(self, viewer: Viewer, community: str) -> bool:
        return viewer.is_district or viewer.community == community

    def _seats_taken(self, need: NeedRow) -> int:
        rows = (self._assignments.get(i) for i in need.assignment_ids)
        return sum(1 for row in rows if row is not None and row.holds_a_seat)

    def _open_needs(self, viewer: Viewer, now: datetime) -> list[dict[str, Any]]:
        found = []
        for need in reversed(self._needs.values()):
            if need.cancelled or not self._visible(viewer, need.community):
                continue
            missing = need.headcount - self._seats_taken(need)
            if missing <= 0:
                continue
            found.append(self._need_view(viewer, need, missing, now))
        return found

    def _need_view(
        self, viewer: Viewer, need: NeedRow, missing: int, now: datetime
    ) -> dict[str, Any]:
        if need.window_end <= now and (need.unmatched is None or need.unmatched.pending):
            # The service says so at its next event; the page need not wait for one.
            reason, pending = "expired", False
        elif need.unmatched is None:
            reason, pending = "awaiting_match", True
        else:
            reason, pending = need.unmatched.reason, need.unmatched.pending
        row: dict[str, Any] = {
            "need_id": need.need_id,
            "community": need.community,
            "service_type": need.service_type,
            "window": {"start": need.window_start.isoformat(), "end": need.window_end.isoformat()},
            "headcount": need.headcount,
            "missing": missing,
            "reason": reason,
            "pending": pending,
            "urgency": need.urgency,
            "source": need.source,
        }
        if viewer.may_see_personal_data_of(need.community):
            row["text"] = need.text
            row["contact"] = need.contact
        return row

    def _recent_assignments(self, viewer: Viewer) -> list[dict[str, Any]]:
        visible = [a for a in self._assignments.values() if self._visible(viewer, a.community)]
        visible.sort(key=lambda a: a.seq, reverse=True)
        return [self._assignment_view(viewer, a) for a in visible[: self._recent]]

    def _assignment_view(self, viewer: Viewer, row: AssignmentRow) -> dict[str, Any]:
        own = viewer.may_see_personal_data_of(row.community)
        found: dict[str, Any] = {
            "assignment_id": row.assignment_id,
            "need_id": row.need_id,
            "volunteer_id": row.volunteer_id,
            "community": row.community,
            "slot": {"start": row.slot_start, "end": row.slot_end},
            "score": row.score,
            "reasons": row.reasons,
            "service_type": row.service_type,
            "status": row.status,
            "rating": row.rating,
            "actions": list(row.actions()) if own else [],
        }
        if own:
            volunteer = self._volunteers.get(row.volunteer_id)
            found["volunteer_name"] = volunteer.name if volunteer else ""
            need = self._needs.get(row.need_id)
            found["need_text"] = need.text if need else ""
        return found

    def fill_rates(self) -> list[dict[str, Any]]:
        """Per community: seats booked over seats asked, over needs not cancelled."""
        asked: dict[str, int] = {}
        booked: dict[str, int] = {}
        needs: dict[str, int] = {}
        for need in self._needs.values():
            if need.cancelled:
                continue
            c = need.community
            needs[c] = needs.get(c, 0) + 1
            asked[c] = asked.get(c, 0) + need.headcount
            booked[c] = booked.get(c, 0) + min(need.headcount, self._seats_taken(need))
        return [
            {
                "community": c,
                "needs": needs[c],
                "seats_asked": asked[c],
                "seats_booked": booked[c],
                "fill_rate": round(booked[c] / asked[c], 4) if asked[c] else 0.0,
            }
            for c in sorted(asked)
        ]
