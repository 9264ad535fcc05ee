"""Errors raised by the models package.

Every error of the project derives from one root per package; each says whether trying
again could help (``transient``) so callers can choose between retry and dead-letter.
Nothing here is transient: a missing package or a broken weight file stays missing or
broken until someone changes the installation, so retrying only burns time.
"""

from __future__ import annotations


class ModelsError(Exception):
    """Root of every error the models package raises."""

    transient: bool = False


class ModelUnavailableError(ModelsError):
    """A backend's Python package or its weights are not installed / not on disk."""

    transient = False


class ModelLoadError(ModelsError):
    """The backend and its weights were found but failed to load or to run."""

    transient = False


class CatalogueError(ModelsError):
    """The service catalogue file is missing or does not validate."""

    transient = False
