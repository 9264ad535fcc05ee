"""How the engine asks about skills: a ``SkillModel`` places texts into service types.

The engine books a volunteer only inside a service type that both the need and the
volunteer were placed in; the model decides (and abstains) with its own thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class NeedPlacement:
    """Service types a need asks for, most likely first; empty when the model abstains."""

    types: tuple[tuple[str, float], ...]
    # Types that may fill a headcount beyond the first person: for a talk or a class, the
    # organisers who set up the room and bring people in.
    support: tuple[tuple[str, float], ...] = ()

    @property
    def top(self) -> str | None:
        return self.types[0][0] if self.types else None


class SkillModel(Protocol):
    @property
    def version(self) -> str: ...

    def place_need(self, text: str) -> NeedPlacement: ...

    def place_volunteer(self, skills: str) -> Mapping[str, float]: ...

    def prepare(self, need_texts: Sequence[str], skill_texts: Sequence[str]) -> None:
        """Place many texts in one batch ahead of time (a cache warm-up; may do nothing)."""
        ...


def skill_fit(
    need_types: Sequence[tuple[str, float]], volunteer_types: Mapping[str, float]
) -> tuple[float, str | None]:
    """Best shared service type and its fit: the geometric mean of both confidences."""
    best, best_type = 0.0, None
    for service_type, need_conf in need_types:
        volunteer_conf = volunteer_types.get(service_type)
        if volunteer_conf is None:
            continue
        fit = (need_conf * volunteer_conf) ** 0.5
        if fit > best:
            best, best_type = fit, service_type
    return best, best_type
