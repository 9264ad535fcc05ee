"""Errors raised by the streams package."""

from __future__ import annotations


class StreamsError(Exception):
    """Root of every error the streams package raises."""

    transient: bool = False


class ConflictRetriesExhaustedError(StreamsError):
    """Workers kept changing the same state under this event; try the record again later."""

    transient = True
