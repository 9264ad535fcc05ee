"""Partition status from a sliding window of lag samples, the way Burrow judges it.

- OK: caught up, or offsets move and lag is not growing;
- WARNING: offsets move, but lag grew at every sample of the window;
- STALLED: offsets do not move across the window while lag > 0;
- STOPPED: the group never committed on the partition while records wait.
Pure: samples in, status out; ``lag --watch`` and the metrics feed it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "OK"
    WARNING = "WARNING"
    STALLED = "STALLED"
    STOPPED = "STOPPED"


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float
    committed: int | None
    log_end: int

    @property
    def lag(self) -> int:
        return self.log_end - (self.committed or 0)


def status_of(window: Iterable[Sample]) -> Status:
    samples = list(window)
    if not samples or samples[-1].lag <= 0:
        return Status.OK
    if len(samples) < 2:
        return Status.OK  # one sample says nothing of movement: a fresh record, not a stop
    if all(s.committed is None for s in samples):
        return Status.STOPPED
    committed = [s.committed for s in samples]
    if len(set(committed)) == 1:
        return Status.STALLED
    lags = [s.lag for s in samples]
    if all(later > earlier for earlier, later in itertools.pairwise(lags)):
        return Status.WARNING
    return Status.OK


class StatusTracker:
    """Keeps the last ``size`` samples per (topic, partition)."""

    def __init__(self, size: int = 5) -> None:
        self._size = size
        self._windows: dict[tuple[str, int], deque[Sample]] = {}

    def add(self, topic: str, partition: int, sample: Sample) -> Status:
        window = self._windows.setdefault((topic, partition), deque(maxlen=self._size))
        window.append(sample)
        return status_of(window)
