"""Errors raised by the streams package."""

from __future__ import annotations


class StreamsError(Exception):
    """Root of every error the streams package raises."""

    transient: bool = False


class ConflictRetriesExhaustedError(StreamsError):
    """Workers kept changing the same state under this event; try the record again later."""

    transient = True


class ResponseRejectedError(StreamsError):
    """A coordinator's answer that cannot be sent: unknown booking, wrong community, or an
    action the booking's status no longer allows. ``status`` is the HTTP status to show."""

    transient = False

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ResponseNotPublishedError(StreamsError):
    """The broker did not take a coordinator's answer; the coordinator may try again."""

    transient = True
