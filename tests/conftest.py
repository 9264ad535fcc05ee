from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from matcher.engine import Engine
from matcher.replay import Line, replay
from matcher.state import InMemoryStore
from schemas.codec import dump_output
from schemas.events import OutputEvent
from tests.fakes import DEFAULT_KEYWORDS, KeywordSkillModel, line

Run = Callable[[Sequence[Mapping[str, Any] | bytes]], list[OutputEvent]]


@pytest.fixture
def skills() -> KeywordSkillModel:
    return KeywordSkillModel(DEFAULT_KEYWORDS)


@pytest.fixture
def run(skills: KeywordSkillModel) -> Run:
    """Replay a list of events (dicts or raw bytes) through a fresh engine."""

    def _run(items: Sequence[Mapping[str, Any] | bytes]) -> list[OutputEvent]:
        engine = Engine(InMemoryStore(), skills)
        lines = [Line(i, x if isinstance(x, bytes) else line(x)) for i, x in enumerate(items)]
        return list(replay(lines, engine))

    return _run


def dumps(events: Sequence[OutputEvent]) -> list[str]:
    return [dump_output(e) for e in events]
