"""Booking quality on the labelled weeks, through the same replay path as the CLI.

The held-out week (tests/data/hard/heldout) is deliberately not here: nothing is tuned
against it; ``python -m matcher evaluate`` reports on it (see BENCHMARKS.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matcher.evaluation import Labels, Report, evaluate
from matcher.replay import split_lines
from matcher.settings import ModelSettings
from models.factory import build_skill_model

DATA = Path(__file__).resolve().parent.parent / "data"


def report_for(name: str) -> Report:
    lines = list(split_lines((DATA / f"{name}.jsonl").read_bytes()))
    labels = Labels.from_json(json.loads((DATA / f"{name}.labels.json").read_text()))
    return evaluate(lines, labels, build_skill_model(ModelSettings()))


@pytest.mark.slow
def test_dev_week_meets_the_bars() -> None:
    report = report_for("dev_week")
    assert report.violations == []
    assert report.precision >= 0.95, report.as_dict()
    assert report.recall >= 0.92, report.as_dict()


@pytest.mark.slow
def test_hard_tune_week_keeps_precision() -> None:
    report = report_for("hard/tune")
    assert report.violations == []
    assert report.precision >= 0.95, report.as_dict()
    # Not yet the 0.92 goal (see BENCHMARKS.md); this floor catches regressions.
    assert report.recall >= 0.80, report.as_dict()
