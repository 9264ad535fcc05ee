"""Recruiting hints: which services residents asked for and nobody could give, per
community, from the events the service published (a replay output or a topic dump)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO


@dataclass(frozen=True, order=True)
class Shortage:
    community: str
    service_type: str
    needs: int
    people_missing: int


def shortages(
    lines: Iterable[str], *, since: datetime | None = None, until: datetime | None = None
) -> list[Shortage]:
    """Needs whose last known obstacle was a missing skill. Expiry is not an obstacle of
    its own here: a need that expired unmatched keeps the reason it had before."""
    last: dict[str, dict[str, object]] = {}
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        if event.get("type") != "need.unmatched" or event.get("reason") == "expired":
            continue
        moment = datetime.fromisoformat(str(event["occurred_at"]))
        if (since and moment < since) or (until and moment >= until):
            continue
        last[str(event["need_id"])] = event
    needs: Counter[tuple[str, str]] = Counter()
    people: Counter[tuple[str, str]] = Counter()
    for event in last.values():
        if event.get("reason") != "no_skill_match" or not event.get("service_type"):
            continue
        key = (str(event.get("community") or "?"), str(event["service_type"]))
        needs[key] += 1
        people[key] += int(str(event.get("missing", 1)))
    return sorted(
        (Shortage(c, t, needs[(c, t)], people[(c, t)]) for c, t in needs),
        key=lambda s: (-s.needs, -s.people_missing, s.community, s.service_type),
    )


def print_shortages(rows: list[Shortage], names: Mapping[str, str], out: IO[str]) -> None:
    if not rows:
        out.write("no unmatched need for lack of a skill in this period\n")
        return
    out.write(f"{'community':<12} {'service type':<24} {'needs':>5} {'people':>6}  name\n")
    for row in rows:
        out.write(
            f"{row.community:<12} {row.service_type:<24} {row.needs:>5} "
            f"{row.people_missing:>6}  {names.get(row.service_type, '')}\n"
        )
