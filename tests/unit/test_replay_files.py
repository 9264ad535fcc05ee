"""Replay over the bundled files: bad lines are dead-lettered one by one, never lost."""

from __future__ import annotations

import json
from pathlib import Path

from matcher.engine import Engine
from matcher.replay import replay, split_lines
from matcher.state import InMemoryStore
from schemas.codec import dump_output
from schemas.events import RecordRejected
from tests.fakes import DEFAULT_KEYWORDS, KeywordSkillModel

DATA = Path(__file__).resolve().parent.parent / "data"


def test_every_bad_line_gives_one_clear_rejection() -> None:
    raw = (DATA / "bad_lines.jsonl").read_bytes()
    expected_fields: dict[str, str | None] = json.loads(
        (DATA / "bad_lines.expect.json").read_text()
    )
    engine = Engine(InMemoryStore(), KeywordSkillModel(DEFAULT_KEYWORDS))
    outputs = list(replay(split_lines(raw), engine))
    assert all(isinstance(o, RecordRejected) for o in outputs)
    rejected = {o.source.offset: o for o in outputs if isinstance(o, RecordRejected)}
    lines = [n for n, text in enumerate(raw.split(b"\n")) if text.strip()]
    assert sorted(rejected) == lines
    for number in lines:
        field = expected_fields[str(number)]
        record = rejected[number]
        assert record.source.topic == "replay"
        if field is not None:
            assert field in record.error, (number, record.error)


def test_contact_never_reaches_an_output() -> None:
    raw = (DATA / "bad_lines.jsonl").read_bytes() + b"\n" + (DATA / "dev_week.jsonl").read_bytes()
    engine = Engine(InMemoryStore(), KeywordSkillModel(DEFAULT_KEYWORDS))
    text = "\n".join(dump_output(o) for o in replay(split_lines(raw), engine))
    for obj in map(json.loads, filter(None, (DATA / "dev_week.jsonl").read_text().splitlines())):
        for value in (obj.get("contact") or {}).values():
            assert str(value) not in text
