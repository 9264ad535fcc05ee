"""Replay throughput and candidate-search time per need (``python -m bench.replay``).

Replay: events/s of the whole decision path (parse, place, match, serialise) over a
synthetic week. Candidate search: with N volunteers already placed, the time one
need.posted takes in the engine (index lookup, slot search, scoring, booking).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.synthetic import synthetic_week
from matcher.engine import Engine
from matcher.replay import Line, replay
from matcher.settings import ModelSettings
from matcher.state import InMemoryStore
from models.factory import build_skill_model
from schemas.codec import dump_output, parse_input
from schemas.events import NeedPosted, VolunteerAvailable


def bench_replay(volunteers: int, needs: int) -> dict[str, float]:
    """Whole replay, and the share of it spent placing texts (placed first, then cached)."""
    started = time.perf_counter()
    skills = build_skill_model(ModelSettings())
    load_s = time.perf_counter() - started
    lines = synthetic_week(skills.catalogue, volunteers=volunteers, needs=needs)
    events = [parse_input(x) for x in lines]
    started = time.perf_counter()
    skills.prepare(
        [e.text for e in events if isinstance(e, NeedPosted)],
        [e.skills for e in events if isinstance(e, VolunteerAvailable)],
    )
    placement_s = time.perf_counter() - started
    engine = Engine(InMemoryStore(), skills)
    started = time.perf_counter()
    outputs = sum(
        1 for e in replay([Line(i, x) for i, x in enumerate(lines)], engine) if dump_output(e)
    )
    elapsed = time.perf_counter() - started
    total = elapsed + placement_s
    return {
        "events": len(lines),
        "outputs": outputs,
        "seconds": total,
        "events_per_s": len(lines) / total,
        "placement_s": placement_s,
        "placement_share": placement_s / total,
        "model_load_s": load_s,
    }


def bench_candidate_search(volunteers: int, probes: int = 300) -> dict[str, float]:
    skills = build_skill_model(ModelSettings())
    lines = synthetic_week(skills.catalogue, volunteers=volunteers, needs=probes, seed=11)
    events = [parse_input(x) for x in lines]
    skills.prepare(
        [e.text for e in events if isinstance(e, NeedPosted)],
        [e.skills for e in events if isinstance(e, VolunteerAvailable)],
    )
    engine = Engine(InMemoryStore(), skills)
    for event in events[:volunteers]:
        engine.handle(event)
    timings = []
    for event in events[volunteers:]:
        started = time.perf_counter()
        engine.handle(event)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "volunteers": volunteers,
        "p50_ms": statistics.median(timings),
        "p99_ms": timings[int(len(timings) * 0.99) - 1],
        "mean_ms": statistics.fmean(timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--volunteers", type=int, default=10_000)
    parser.add_argument("--needs", type=int, default=10_000)
    parser.add_argument("--search-sizes", default="10000,100000")
    args = parser.parse_args()
    result = bench_replay(args.volunteers, args.needs)
    print(
        f"replay {args.volunteers} volunteers + {args.needs} needs: "
        f"{result['events_per_s']:.0f} events/s ({result['seconds']:.1f} s, "
        f"{result['outputs']:.0f} outputs); placing texts {result['placement_s']:.1f} s = "
        f"{result['placement_share']:.0%} of it; placer built in {result['model_load_s']:.1f} s"
    )
    for size in (int(s) for s in args.search_sizes.split(",")):
        r = bench_candidate_search(size)
        print(
            f"candidate search at {size} volunteers: p50 {r['p50_ms']:.2f} ms, "
            f"p99 {r['p99_ms']:.2f} ms, mean {r['mean_ms']:.2f} ms per need"
        )


if __name__ == "__main__":
    main()
