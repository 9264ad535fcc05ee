"""Matching and placement quality on a labelled week (``python -m bench.quality WEEK``).

Prints booking precision/recall (same- and cross-language), need top-1 by language,
abstentions on needs with no type, volunteer type recall/precision, and missed bookings
by cause. ``--details`` also lists the misses one by one, for tuning weeks only: the
held-out week (and a week built from the check probes) reports aggregates and nothing
else (not even confusions by type), so nobody fits on its items.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matcher.evaluation import Labels, Report, evaluate
from matcher.replay import split_lines
from matcher.settings import ModelSettings
from models.factory import build_skill_model
from models.placement import CataloguePlacer
from schemas.codec import parse_input
from schemas.events import NeedPosted, VolunteerAvailable
from schemas.exceptions import InvalidEventError

# Weeks reported in aggregate only: the held-out week, and weeks built from the
# ``*_check`` probes (bench/probe_week.py).
HELD_OUT_MARKS = ("heldout", "check")


def is_held_out(path: Path) -> bool:
    return any(mark in path.name for mark in HELD_OUT_MARKS)


@dataclass(frozen=True)
class Week:
    needs: dict[str, str]  # need_id -> text
    volunteers: dict[str, str]  # volunteer_id -> skills
    labels: Labels
    lines: list[Any]


def load_week(path: Path) -> Week:
    labels_path = path.with_suffix(".labels.json")
    labels = Labels.from_json(json.loads(labels_path.read_text(encoding="utf-8")))
    lines = list(split_lines(path.read_bytes()))
    needs: dict[str, str] = {}
    volunteers: dict[str, str] = {}
    for line in lines:
        try:
            event = parse_input(line.raw)
        except InvalidEventError:
            continue
        if isinstance(event, NeedPosted):
            needs[event.need_id] = event.text
        elif isinstance(event, VolunteerAvailable):
            volunteers[event.volunteer_id] = event.skills
    return Week(needs, volunteers, labels, lines)


def placement_quality(week: Week, placer: CataloguePlacer) -> dict[str, Any]:
    labels = week.labels
    need_ids = list(week.needs)
    placed = placer.predict_needs([week.needs[n] for n in need_ids])
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    confused: Counter[str] = Counter()
    abstained_no_type = no_type = 0
    for need_id, placement in zip(need_ids, placed, strict=True):
        wanted = set(labels.need_types.get(need_id, ()))
        if not wanted:
            no_type += 1
            abstained_no_type += placement.top is None
            continue
        language = labels.language.get(need_id, "?")
        for key in ("all", language):
            totals[key] += 1
            hits[key] += placement.top in wanted
        if placement.top not in wanted:
            confused[f"{sorted(wanted)[0]} -> {placement.top or 'abstained'}"] += 1
    volunteer_ids = list(week.volunteers)
    offered = placer.predict_volunteers([week.volunteers[v] for v in volunteer_ids])
    true_pos = labelled = predicted = 0
    volunteer_missed: Counter[str] = Counter()
    for volunteer_id, types in zip(volunteer_ids, offered, strict=True):
        wanted = set(labels.volunteer_types.get(volunteer_id, ()))
        labelled += len(wanted)
        predicted += len(types)
        true_pos += len(wanted & set(types))
        volunteer_missed.update(wanted - set(types))
    return {
        "need_top1": {k: hits[k] / totals[k] for k in totals},
        "need_counts": dict(totals),
        "no_type_abstained": f"{abstained_no_type}/{no_type}",
        "volunteer_recall": true_pos / labelled if labelled else 1.0,
        "volunteer_precision": true_pos / predicted if predicted else 1.0,
        # Counts by type only: which types are weak, never which texts.
        "need_confusions": dict(confused.most_common()),
        "volunteer_types_missed": dict(volunteer_missed.most_common()),
    }


def rounded(result: dict[str, Any]) -> dict[str, Any]:
    return {
        k: rounded(v) if isinstance(v, dict) else round(v, 3) if isinstance(v, float) else v
        for k, v in result.items()
    }


def miss_causes(week: Week, placer: CataloguePlacer, report: Report) -> Counter[str]:
    causes: Counter[str] = Counter()
    for need_id, volunteer_id in report.missed:
        causes[_cause(week, placer, need_id, volunteer_id)] += 1
    return causes


def _cause(week: Week, placer: CataloguePlacer, need_id: str, volunteer_id: str) -> str:
    labels = week.labels
    placement = placer.place_need(week.needs[need_id])
    shared = set(labels.need_types.get(need_id, ())) & set(
        labels.volunteer_types.get(volunteer_id, ())
    )
    placed_types = {t for t, _ in placement.types} | {t for t, _ in placement.support}
    if placement.top is None:
        return "need abstained"
    if not placed_types & shared:
        return "need placed in a wrong type"
    offered = placer.place_volunteer(week.volunteers[volunteer_id])
    if not set(offered) & shared & placed_types:
        return "volunteer profile lacks the type"
    return "time or competition"


def run(path: Path, *, details: bool) -> dict[str, Any]:
    if details and is_held_out(path):
        raise SystemExit("--details is refused on held-out and check weeks: report aggregates only")
    week = load_week(path)
    started = time.perf_counter()
    placer = build_skill_model(ModelSettings())
    fit_s = time.perf_counter() - started
    report = evaluate(week.lines, week.labels, placer)
    result: dict[str, Any] = {
        "week": path.name,
        "placer": placer.version,
        "fit_s": round(fit_s, 1),
        "precision": round(report.precision, 3),
        "recall": round(report.recall, 3),
        "bookings": report.bookings,
        "correct": report.correct,
        "oracle": report.oracle_correct,
        "violations": len(report.violations),
        "by_language": report.by_language,
        **rounded(placement_quality(week, placer)),
        "missed_by_cause": dict(miss_causes(week, placer, report)),
        "wrong_bookings": len(report.wrong),
    }
    if is_held_out(path):
        # Which types are weak is itself something to tune on: the held-out week says
        # how well, never where.
        result.pop("need_confusions")
        result.pop("volunteer_types_missed")
    if details:
        result["details"] = _details(week, placer, report)
    return result


def _details(week: Week, placer: CataloguePlacer, report: Report) -> dict[str, Any]:
    labels = week.labels

    def need(n: str) -> dict[str, Any]:
        placed = placer.place_need(week.needs[n]).types
        return {"id": n, "text": week.needs[n], "label": labels.need_types.get(n), "placed": placed}

    def volunteer(v: str) -> dict[str, Any]:
        return {
            "id": v,
            "skills": week.volunteers[v],
            "label": labels.volunteer_types.get(v),
            "placed": placer.place_volunteer(week.volunteers[v]),
        }

    return {
        "missed": [
            {"cause": _cause(week, placer, n, v), "need": need(n), "volunteer": volunteer(v)}
            for n, v in report.missed
        ],
        "wrong": [{"need": need(n), "volunteer": volunteer(v)} for n, v in report.wrong],
        "misplaced_needs": [
            need(n)
            for n in week.needs
            if labels.need_types.get(n)
            and placer.place_need(week.needs[n]).top not in set(labels.need_types[n])
        ],
        "volunteer_types_missed": [
            volunteer(v)
            for v in week.volunteers
            if set(labels.volunteer_types.get(v, ()))
            - set(placer.place_volunteer(week.volunteers[v]))
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument("week", type=Path, nargs="+", help="WEEK.jsonl with WEEK.labels.json")
    parser.add_argument("--details", action="store_true", help="list misses (not held-out)")
    args = parser.parse_args(argv)
    for path in args.week:
        json.dump(run(path, details=args.details), sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
