"""Synthetic weeks for benchmarks: many volunteers and needs in catalogue language."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

from models.catalogue import Catalogue

BJ = timezone(timedelta(hours=8))
WEEK = datetime(2026, 12, 7, tzinfo=BJ)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _window(rng: random.Random, hours: tuple[int, int]) -> tuple[datetime, datetime]:
    start = WEEK + timedelta(days=rng.randrange(7), hours=rng.randrange(7, 20))
    return start, start + timedelta(hours=rng.randint(*hours))


def synthetic_week(
    catalogue: Catalogue,
    *,
    volunteers: int,
    needs: int,
    communities: int = 20,
    seed: int = 7,
    prefix: str = "",
) -> list[bytes]:
    """Volunteer events first (the Sunday before), then needs in time order."""
    rng = random.Random(seed)
    types = catalogue.types
    lines: list[bytes] = []
    posted = WEEK - timedelta(days=1)
    for i in range(volunteers):
        chosen = rng.sample(types, rng.randint(1, 2))
        skills = "；".join(rng.choice(t.volunteer_examples) for t in chosen)
        community = f"社区{rng.randrange(communities):02d}"
        windows = [_window(rng, (2, 8)) for _ in range(rng.randint(1, 3))]
        lines.append(
            _dump(
                {
                    "type": "volunteer.available",
                    "event_id": f"{prefix}bv{i}",
                    "volunteer_id": f"{prefix}v{i}",
                    "occurred_at": _iso(posted + timedelta(seconds=i)),
                    "skills": skills[:2000],
                    "community": community,
                    "kind": rng.choice(["party_member", "micro_org"]),
                    "availability": [{"start": _iso(s), "end": _iso(e)} for s, e in windows],
                    "max_hours_per_week": rng.choice([2, 4, 8]),
                }
            )
        )
    for i in range(needs):
        service = rng.choice(types)
        start, end = _window(rng, (2, 6))
        lines.append(
            _dump(
                {
                    "type": "need.posted",
                    "event_id": f"{prefix}bn{i}",
                    "need_id": f"{prefix}n{i}",
                    "occurred_at": _iso(posted + timedelta(hours=12, seconds=i)),
                    "community": f"社区{rng.randrange(communities):02d}",
                    "text": rng.choice(service.need_examples),
                    "window": {"start": _iso(start), "end": _iso(end)},
                    "duration_minutes": rng.choice([30, 60, 90]),
                    "headcount": rng.choice([1, 1, 1, 2]),
                }
            )
        )
    return lines


def _dump(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()
