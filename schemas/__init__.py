"""Event models and validation for contract v1."""

from schemas.codec import dump_output, parse_input, redact_raw, topic_of
from schemas.events import (
    AssignmentAccepted,
    AssignmentCancelled,
    AssignmentCompleted,
    AssignmentDeclined,
    AssignmentProposed,
    InputEvent,
    NeedCancelled,
    NeedPosted,
    NeedUnmatched,
    OutputEvent,
    RecordRejected,
    RecordSource,
    Slot,
    TimeWindow,
    VolunteerAvailable,
    VolunteerWithdrawn,
)
from schemas.exceptions import InvalidEventError, SchemasError

__all__ = [
    "AssignmentAccepted",
    "AssignmentCancelled",
    "AssignmentCompleted",
    "AssignmentDeclined",
    "AssignmentProposed",
    "InputEvent",
    "InvalidEventError",
    "NeedCancelled",
    "NeedPosted",
    "NeedUnmatched",
    "OutputEvent",
    "RecordRejected",
    "RecordSource",
    "SchemasError",
    "Slot",
    "TimeWindow",
    "VolunteerAvailable",
    "VolunteerWithdrawn",
    "dump_output",
    "parse_input",
    "redact_raw",
    "topic_of",
]
