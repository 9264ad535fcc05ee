"""What the CLI commands do: file I/O and printing around the pure engine."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

from matcher.engine import Engine
from matcher.evaluation import Labels, evaluate
from matcher.replay import Line, replay, split_lines
from matcher.settings import Settings
from matcher.skills import SkillModel
from matcher.state import InMemoryStore
from schemas.codec import dump_output
from schemas.events import (
    AssignmentCancelled,
    AssignmentProposed,
    NeedUnmatched,
    OutputEvent,
    RecordRejected,
)


def load_skill_model(settings: Settings) -> SkillModel:
    from models.factory import build_skill_model

    return build_skill_model(settings.model)


def run_prepare(settings: Settings, out: IO[str] | None = None) -> int:
    model = load_skill_model(settings)
    print(f"skill model ready: {model.version}", file=out or sys.stdout)
    return 0


def run_replay(settings: Settings, source: Path, target: Path, *, progress: bool | None) -> int:
    data = source.read_bytes()
    engine = Engine(InMemoryStore(), load_skill_model(settings))
    lines = _with_progress(list(split_lines(data)), progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline="\n") as out:
        for event in replay(lines, engine):
            out.write(dump_output(event) + "\n")
    return 0


def _with_progress(lines: list[Line], progress: bool | None) -> Iterator[Line]:
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    yield from tqdm(lines, desc="replay", unit="ev", disable=not show, file=sys.stderr)


def run_demo(settings: Settings, source: Path, out: IO[str] | None = None) -> int:
    stream = out or sys.stdout
    engine = Engine(InMemoryStore(), load_skill_model(settings))
    events = list(replay(split_lines(source.read_bytes()), engine))
    print_tables(events, stream)
    return 0


def print_tables(events: list[OutputEvent], out: IO[str]) -> None:
    proposed = [e for e in events if isinstance(e, AssignmentProposed)]
    cancelled = {e.assignment_id for e in events if isinstance(e, AssignmentCancelled)}
    # A need's last word decides: unmatched, unless a booking came after that notice.
    unmatched: dict[str, NeedUnmatched] = {}
    for event in events:
        if isinstance(event, NeedUnmatched):
            unmatched[event.need_id] = event
        elif isinstance(event, AssignmentProposed):
            unmatched.pop(event.need_id, None)
    booked_needs = {e.need_id for e in proposed if e.assignment_id not in cancelled}
    out.write(f"\nAssignments ({len(proposed)} proposed, {len(cancelled)} withdrawn)\n")
    out.write(
        f"{'need':<8} {'volunteer':<10} {'community':<10} {'slot (+08:00)':<24} "
        f"{'score':>5}  {'service type':<22} reasons\n"
    )
    for e in proposed:
        mark = " (cancelled)" if e.assignment_id in cancelled else ""
        slot = f"{e.slot.start:%m-%d %H:%M}-{e.slot.end:%H:%M}"
        reasons = " ".join(f"{k}={v:.2f}" for k, v in e.reasons.items())
        out.write(
            f"{e.need_id:<8} {e.volunteer_id:<10} {e.community[:10]:<10} {slot:<24} "
            f"{e.score:>5.2f}  {(e.service_type or '-'):<22} {reasons}{mark}\n"
        )
    still = list(unmatched.values())
    out.write(f"\nUnmatched needs, last word on each ({len(still)})\n")
    out.write(f"{'need':<8} {'missing':>7}  {'reason':<16} {'pending':<8} service type\n")
    for u in still:
        out.write(
            f"{u.need_id:<8} {u.missing:>7}  {u.reason:<16} {u.pending!s:<8} "
            f"{u.service_type or '-'}\n"
        )
    rejected = [e for e in events if isinstance(e, RecordRejected)]
    by_reason = Counter(u.reason for u in still)
    out.write(
        f"\nSummary: {len(booked_needs)} needs booked, {len(still)} unmatched "
        f"({', '.join(f'{k} {v}' for k, v in sorted(by_reason.items())) or 'none'}), "
        f"{len(rejected)} records rejected\n"
    )


def run_evaluate(settings: Settings, source: Path, labels_path: Path, *, as_json: bool) -> int:
    labels = Labels.from_json(json.loads(labels_path.read_text(encoding="utf-8")))
    report = evaluate(list(split_lines(source.read_bytes())), labels, load_skill_model(settings))
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(
            f"bookings {report.bookings}, correct {report.correct}, oracle {report.oracle_correct}"
        )
        print(
            f"precision {report.precision:.3f}  recall {report.recall:.3f}  "
            f"rule violations {len(report.violations)}"
        )
        for kind, row in report.by_language.items():
            print(
                f"  {kind}-language pairs: {row['bookings']:.0f} bookings, "
                f"precision {row['precision']:.3f}, recall {row['recall']:.3f}"
            )
        for need, volunteer in report.wrong:
            print(f"  wrong  {need} -> {volunteer}")
        for need, volunteer in report.missed:
            print(f"  missed {need} -> {volunteer}")
    return 0


def run_recruit(
    settings: Settings, outputs: Path, since: datetime | None, until: datetime | None
) -> int:
    from matcher.recruit import print_shortages, shortages
    from models.catalogue import load_catalogue

    catalogue = load_catalogue(settings.model.catalogue_path)
    names = {t.id: f"{t.name_zh} / {t.name_en}" for t in catalogue.types}
    lines = outputs.read_text(encoding="utf-8").splitlines()
    print_shortages(shortages(lines, since=since, until=until), names, sys.stdout)
    return 0
