"""Errors raised by the schemas package.

Every error of the project derives from one root per package; each says whether trying
again could help (``transient``) so callers can choose between retry and dead-letter.
"""

from __future__ import annotations


class SchemasError(Exception):
    """Root of every error the schemas package raises."""

    transient: bool = False


class InvalidEventError(SchemasError):
    """An input record that can never be used: it goes to dead-letters.

    ``field`` names the offending field in dotted form (``window.end``) or is ``None``
    when the record as a whole is unusable (not JSON, not an object).
    """

    transient = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
