"""Typed models for every event of contract v1 (``shared/contract/events-v1.md``).

Validation is strict: nothing is coerced (a number sent as a string is invalid), times
need an offset, and errors name the field. Unknown extra fields are ignored so upstream
teams can add fields without breaking us.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

EventId = Annotated[str, Field(min_length=1, max_length=128)]
Identifier = Annotated[str, Field(min_length=1, max_length=256)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]

VolunteerKind = Literal["party_member", "micro_org", "social_worker", "resident"]
Urgency = Literal["low", "normal", "high", "critical"]
UnmatchedReason = Literal["no_skill_match", "no_time_overlap", "no_capacity", "expired"]
CancelReason = Literal["need_cancelled", "declined"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class TimeWindow(_Strict):
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _end_after_start(self) -> TimeWindow:
        if self.end <= self.start:
            raise ValueError("@end: is not after window start")
        return self

    @property
    def minutes(self) -> float:
        return (self.end - self.start).total_seconds() / 60.0


class EventBase(_Strict):
    event_id: EventId
    occurred_at: AwareDatetime


class VolunteerAvailable(EventBase):
    type: Literal["volunteer.available"]
    volunteer_id: Identifier
    name: str = Field(default="", repr=False)
    kind: VolunteerKind = "resident"
    skills: Annotated[str, Field(min_length=1, max_length=2000)]
    community: Identifier
    serves_communities: list[Identifier] | None = None
    availability: list[TimeWindow]
    max_hours_per_week: Annotated[float, Field(gt=0)] = 4.0

    @property
    def served(self) -> tuple[str, ...]:
        """Communities served; the contract's default is the home community."""
        if self.serves_communities is None:
            return (self.community,)
        return tuple(dict.fromkeys(self.serves_communities))


class VolunteerWithdrawn(EventBase):
    type: Literal["volunteer.withdrawn"]
    volunteer_id: Identifier


class NeedPosted(EventBase):
    type: Literal["need.posted"]
    need_id: Identifier
    community: Identifier
    text: Annotated[str, Field(min_length=1, max_length=2000)]
    window: TimeWindow
    duration_minutes: Annotated[int, Field(ge=15, le=1440)] = 60
    headcount: Annotated[int, Field(ge=1, le=20)] = 1
    urgency: Urgency = "normal"
    source: str = ""
    # Personal data of the resident: kept out of repr so it cannot leak into logs.
    contact: dict[str, Any] | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _duration_fits_window(self) -> NeedPosted:
        if self.duration_minutes > self.window.minutes:
            raise ValueError("@duration_minutes: does not fit inside the window")
        return self


class NeedCancelled(EventBase):
    type: Literal["need.cancelled"]
    need_id: Identifier


class _Response(EventBase):
    need_id: Identifier
    volunteer_id: Identifier
    assignment_id: Identifier | None = None


class AssignmentAccepted(_Response):
    type: Literal["assignment.accepted"]


class AssignmentDeclined(_Response):
    type: Literal["assignment.declined"]


class AssignmentCompleted(_Response):
    type: Literal["assignment.completed"]
    rating: Annotated[int, Field(ge=1, le=5)] | None = None


AssignmentResponse = AssignmentAccepted | AssignmentDeclined | AssignmentCompleted
InputEvent = (
    VolunteerAvailable
    | VolunteerWithdrawn
    | NeedPosted
    | NeedCancelled
    | AssignmentAccepted
    | AssignmentDeclined
    | AssignmentCompleted
)

# --- events the service produces -------------------------------------------------------


class OutputBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: EventId
    occurred_at: datetime


class Slot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime


class AssignmentProposed(OutputBase):
    type: Literal["assignment.proposed"] = "assignment.proposed"
    assignment_id: str
    need_id: str
    volunteer_id: str
    community: str
    slot: Slot
    score: Score
    reasons: dict[str, Score]
    matcher_version: str
    service_type: str | None = Field(
        default=None, description="optional: catalogue id of the service the booking is for"
    )


class AssignmentCancelled(OutputBase):
    type: Literal["assignment.cancelled"] = "assignment.cancelled"
    assignment_id: str
    need_id: str
    volunteer_id: str
    reason: CancelReason


class NeedUnmatched(OutputBase):
    type: Literal["need.unmatched"] = "need.unmatched"
    need_id: str
    missing: Annotated[int, Field(ge=1)]
    reason: UnmatchedReason
    pending: bool
    service_type: str | None = Field(
        default=None, description="optional: catalogue id of the service nobody could provide"
    )
    community: str | None = Field(
        default=None, description="optional: the need's community, for recruiting reports"
    )


class RecordSource(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    partition: int
    offset: int


class RecordRejected(BaseModel):
    """Dead-letter wrapper. It has no event_id/occurred_at: the input may have neither."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["record.rejected"] = "record.rejected"
    error: str
    source: RecordSource
    raw: str


OutputEvent = AssignmentProposed | AssignmentCancelled | NeedUnmatched | RecordRejected

INPUT_MODELS: dict[str, type[EventBase]] = {
    "volunteer.available": VolunteerAvailable,
    "volunteer.withdrawn": VolunteerWithdrawn,
    "need.posted": NeedPosted,
    "need.cancelled": NeedCancelled,
    "assignment.accepted": AssignmentAccepted,
    "assignment.declined": AssignmentDeclined,
    "assignment.completed": AssignmentCompleted,
}

OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    "assignment.proposed": AssignmentProposed,
    "assignment.cancelled": AssignmentCancelled,
    "need.unmatched": NeedUnmatched,
    "record.rejected": RecordRejected,
}
