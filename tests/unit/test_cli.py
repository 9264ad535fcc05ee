"""The command line as a user runs it: replay twice gives the same bytes; help reads well;
recruiting hints come from the published events."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from matcher.cli import main
from matcher.recruit import print_shortages, shortages

DATA = Path(__file__).resolve().parent.parent / "data"


def test_replay_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    source = DATA / "dev_week.jsonl"
    assert main(["replay", str(source), "--out", str(first), "--no-progress"]) == 0
    assert main(["replay", str(source), "--out", str(second), "--no-progress"]) == 0
    assert first.read_bytes() == second.read_bytes()
    events = [json.loads(x) for x in first.read_text().splitlines()]
    assert {e["type"] for e in events} >= {"assignment.proposed", "need.unmatched"}
    assert all("contact" not in json.dumps(e, ensure_ascii=False) for e in events)


def test_rejected_lines_carry_replay_source(tmp_path: Path) -> None:
    out = tmp_path / "bad.jsonl"
    assert main(["replay", str(DATA / "bad_lines.jsonl"), "--out", str(out), "--no-progress"]) == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert first["source"] == {"topic": "replay", "partition": 0, "offset": 0}


def test_help_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for command in ("replay", "demo", "evaluate", "recruit", "prepare"):
        assert command in text


def test_prepare_fits_the_skill_model_and_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare"]) == 0
    assert capsys.readouterr().out.startswith("skill model ready: placer")


def test_recruiting_hint_counts_missing_skills_not_expiry() -> None:
    def unmatched(need: str, reason: str, service: str | None, at: str) -> str:
        return json.dumps(
            {
                "type": "need.unmatched",
                "event_id": f"o-{need}-{reason}",
                "occurred_at": at,
                "need_id": need,
                "missing": 1,
                "reason": reason,
                "pending": reason != "expired",
                "service_type": service,
                "community": "c1",
            }
        )

    lines = [
        unmatched("n1", "no_skill_match", "lang.korean", "2026-12-07T09:00:00+08:00"),
        unmatched("n1", "expired", "lang.korean", "2026-12-08T09:00:00+08:00"),
        unmatched("n2", "no_skill_match", "lang.korean", "2026-12-07T10:00:00+08:00"),
        unmatched("n3", "no_time_overlap", "repair.plumbing", "2026-12-07T10:00:00+08:00"),
    ]
    rows = shortages(lines)
    assert [(r.community, r.service_type, r.needs) for r in rows] == [("c1", "lang.korean", 2)]
    out = io.StringIO()
    print_shortages(rows, {"lang.korean": "韩语翻译"}, out)
    assert "韩语翻译" in out.getvalue()
