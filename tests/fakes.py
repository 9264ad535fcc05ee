"""In-process fakes for unit tests: swapped in through constructors, never monkeypatched."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from matcher.skills import NeedPlacement

BJ = "+08:00"


class KeywordSkillModel:
    """Places a text in every type whose keyword it contains."""

    version = "fake-1"

    def __init__(self, keywords: Mapping[str, str]) -> None:
        self._keywords = dict(keywords)  # keyword -> service type
        self.prepared: list[tuple[int, int]] = []

    def _types(self, text: str) -> list[str]:
        return sorted({t for k, t in self._keywords.items() if k in text})

    def place_need(self, text: str) -> NeedPlacement:
        return NeedPlacement(tuple((t, 0.9) for t in self._types(text)))

    def place_volunteer(self, skills: str) -> Mapping[str, float]:
        return dict.fromkeys(self._types(skills), 0.8)

    def prepare(self, need_texts: Sequence[str], skill_texts: Sequence[str]) -> None:
        self.prepared.append((len(need_texts), len(skill_texts)))


DEFAULT_KEYWORDS = {
    "电": "repair.electrical",
    "水管": "repair.plumbing",
    "医": "health.general",
    "doctor": "health.general",
    "数学": "tutor.math",
    "陪": "companion.elderly",
}


def t(day: int, hour: int, minute: int = 0) -> str:
    """A time in the dev week (2026-12-07 is a Monday) in Beijing time."""
    moment = datetime(2026, 12, 7, 0, 0) + timedelta(days=day, hours=hour, minutes=minute)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + BJ


def volunteer(
    vid: str,
    skills: str = "电工",
    *,
    windows: Sequence[tuple[str, str]] = (),
    community: str = "c1",
    at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": "volunteer.available",
        "event_id": f"ev-{vid}-{at or 0}-{len(windows)}",
        "occurred_at": at or t(-1, 8),
        "volunteer_id": vid,
        "name": f"志愿者{vid}",
        "skills": skills,
        "community": community,
        "availability": [{"start": s, "end": e} for s, e in windows],
        **extra,
    }


def need(
    nid: str,
    text: str = "家里没电了",
    *,
    window: tuple[str, str] = ("", ""),
    community: str = "c1",
    at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    start, end = window if window[0] else (t(0, 9), t(0, 12))
    return {
        "type": "need.posted",
        "event_id": f"ev-{nid}",
        "occurred_at": at or t(-1, 12),
        "need_id": nid,
        "community": community,
        "text": text,
        "window": {"start": start, "end": end},
        **extra,
    }


def line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()
