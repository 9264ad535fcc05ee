"""A booking week made of probe texts (``python -m bench.probe_week NEEDS VOLUNTEERS OUT``).

The probes measure placement one text at a time. Booking quality also depends on how
the two sides meet: a need's second type, a profile's missing type, a wrong booking that
takes a slot from a right one. This command puts probe need texts and probe volunteer
profiles into a week in the labelled-week format (``OUT.jsonl`` and ``OUT.labels.json``),
so ``python -m bench.quality OUT.jsonl`` reports booking precision and recall on wording
nobody fitted on.

The week is made by a seeded script, the same input always giving the same week:
volunteers get a kind, a home community (some serve a neighbour too), availability and a
weekly cap; most serviceable needs are put in a fitting volunteer's community and over
part of that volunteer's free time, the rest anywhere. Fits are every volunteer who
shares a labelled type with the need (no review by hand, unlike the labelled weeks).
Build the check week from the ``*_check`` probes and keep ``check`` in its name:
``bench.quality`` then reports aggregates only.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.probe import load_probe
from models.placement import text_language

BEIJING = timezone(timedelta(hours=8))
WEEK_START = datetime(2027, 2, 1, tzinfo=BEIJING)  # a Monday
VOLUNTEERS_POSTED = WEEK_START - timedelta(hours=16)
COMMUNITIES = ("和平里社区", "安贞里社区", "芍药居社区", "青年湖社区", "六铺炕社区")
PLACED_OVER_A_FITTING_VOLUNTEER = 0.85
ORGANISING = "events.organising"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def as_json(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(frozen=True)
class ProbeVolunteer:
    volunteer_id: str
    skills: str
    types: tuple[str, ...]
    kind: str
    community: str
    serves: tuple[str, ...]
    availability: tuple[Window, ...]
    max_hours: float


def _at(day: int, hour: float) -> datetime:
    return WEEK_START + timedelta(days=day, minutes=round(hour * 60))


def _availability(kind: str, rng: random.Random) -> tuple[Window, ...]:
    if kind == "party_member":
        # Little time: a weekday evening or a weekend half-day.
        slots = [(d, 18.5, 21.0) for d in range(5)] + [
            (d, h, h + 3) for d in (5, 6) for h in (9.0, 14.0)
        ]
        chosen = rng.sample(slots, rng.randint(1, 3))
    else:
        days = rng.sample(range(7), rng.randint(2, 4))
        chosen = [(d, *rng.choice([(8.5, 11.5), (9.0, 16.0), (13.5, 17.0)])) for d in days]
    return tuple(Window(_at(d, a), _at(d, b)) for d, a, b in sorted(chosen))


def make_volunteers(
    rows: Sequence[tuple[str, tuple[str, ...]]], rng: random.Random
) -> list[ProbeVolunteer]:
    volunteers = []
    for i, (skills, types) in enumerate(rows, 1):
        kind = rng.choice(["party_member", "party_member", "micro_org", "resident"])
        home = rng.choice(COMMUNITIES)
        serves = (home,) if rng.random() < 0.6 else (home, rng.choice(COMMUNITIES))
        max_hours = rng.choice([2.0, 3.0, 4.0]) if kind == "party_member" else 8.0
        volunteers.append(
            ProbeVolunteer(
                f"pv{i:03d}",
                skills,
                types,
                kind,
                home,
                tuple(dict.fromkeys(serves)),
                _availability(kind, rng),
                max_hours,
            )
        )
    return volunteers


def _need_time(fitting: Sequence[ProbeVolunteer], rng: random.Random) -> tuple[str, Window, int]:
    duration = rng.choice([60, 60, 90, 120])
    if fitting and rng.random() < PLACED_OVER_A_FITTING_VOLUNTEER:
        volunteer = rng.choice(fitting)
        free = rng.choice(volunteer.availability)
        duration = min(duration, int((free.end - free.start).total_seconds() // 60))
        window = Window(
            free.start - timedelta(minutes=rng.choice([0, 30, 60])),
            free.end + timedelta(minutes=rng.choice([0, 30, 60])),
        )
        return rng.choice(volunteer.serves), window, duration
    day, hour = rng.randrange(7), rng.choice([9.0, 10.0, 14.0, 15.0, 19.0])
    return rng.choice(COMMUNITIES), Window(_at(day, hour), _at(day, hour + 3)), duration


def build_week(
    need_rows: Sequence[tuple[str, tuple[str, ...]]],
    volunteer_rows: Sequence[tuple[str, tuple[str, ...]]],
    seed: int = 7,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Input events in arrival order, and their labels."""
    rng = random.Random(seed)
    volunteers = make_volunteers(volunteer_rows, rng)
    # Volunteers first, in order (the sort below is stable).
    timed: list[tuple[datetime, dict[str, Any]]] = [
        (VOLUNTEERS_POSTED, _volunteer_event(v)) for v in volunteers
    ]
    labels: dict[str, Any] = {"needs": {}, "volunteers": {}, "fits": {}, "language": {}}
    for v in volunteers:
        labels["volunteers"][v.volunteer_id] = list(v.types)
        labels["language"][v.volunteer_id] = text_language(v.skills)
    for i, (text, types) in enumerate(need_rows, 1):
        need_id = f"pn{i:03d}"
        fitting = [v for v in volunteers if set(v.types) & set(types)]
        community, window, duration = _need_time(fitting, rng)
        lead = timedelta(minutes=rng.randint(120, 48 * 60))
        posted = max(window.start - lead, VOLUNTEERS_POSTED + timedelta(hours=4))
        timed.append(
            (posted, _need_event(need_id, text, types, community, window, duration, posted))
        )
        labels["needs"][need_id] = list(types)
        labels["language"][need_id] = text_language(text)
        labels["fits"][need_id] = [v.volunteer_id for v in fitting]
    timed.sort(key=lambda pair: pair[0])
    return [event for _, event in timed], labels


def _volunteer_event(v: ProbeVolunteer) -> dict[str, Any]:
    return {
        "type": "volunteer.available",
        "event_id": f"evt-{v.volunteer_id}-1",
        "occurred_at": VOLUNTEERS_POSTED.isoformat(),
        "volunteer_id": v.volunteer_id,
        "kind": v.kind,
        "skills": v.skills,
        "community": v.community,
        "serves_communities": list(v.serves),
        "availability": [w.as_json() for w in v.availability],
        "max_hours_per_week": v.max_hours,
    }


def _need_event(
    need_id: str,
    text: str,
    types: tuple[str, ...],
    community: str,
    window: Window,
    duration: int,
    posted: datetime,
) -> dict[str, Any]:
    # A talk or class is labelled with the speaker's type and the organisers': it needs
    # one person of each, as the labelled weeks' lecture requests do.
    headcount = len(types) if ORGANISING in types else 1
    return {
        "type": "need.posted",
        "event_id": f"evt-{need_id}-1",
        "occurred_at": posted.isoformat(),
        "need_id": need_id,
        "community": community,
        "text": text,
        "window": window.as_json(),
        "duration_minutes": duration,
        "headcount": headcount,
        "source": "probe",
    }


def write_week(events: Sequence[dict[str, Any]], labels: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(e, ensure_ascii=False) for e in events)
    out.with_suffix(".jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    labels = {"catalogue_ids_version": "1", **labels}
    out.with_suffix(".labels.json").write_text(
        json.dumps(labels, ensure_ascii=False, indent=1), encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_week", description=__doc__)
    parser.add_argument("needs", type=Path, help="probe need file (text, types)")
    parser.add_argument("volunteers", type=Path, help="probe volunteer file (text, types)")
    parser.add_argument("out", type=Path, help="OUT: writes OUT.jsonl and OUT.labels.json")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    events, labels = build_week(load_probe(args.needs), load_probe(args.volunteers), args.seed)
    write_week(events, labels, args.out)
    print(f"{args.out.with_suffix('.jsonl')}: {len(events)} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
