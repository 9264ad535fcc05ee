"""Errors raised by the matcher's decision logic."""

from __future__ import annotations


class MatcherError(Exception):
    """Root of every error the matcher package raises."""

    transient: bool = False


class UnusableEventError(MatcherError):
    """A valid event that the current state cannot use (cancel of an unknown need,
    a response for a booking the service does not hold): it goes to dead-letters."""

    transient = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class StoreUnavailableError(MatcherError):
    """The state store could not be reached; the event should be retried, not rejected."""

    transient = True
