"""Need placement on independently written requests (``python -m bench.probe FILE...``).

Each line of a probe file is ``{"text": ..., "types": [...]}``: a resident's request and
the catalogue types a coordinator gives it (``[]`` for one no volunteer service covers).
The probes in ``tests/data/hard/`` were written by another hand from the list of type ids
alone, without the catalogue, the labelled weeks or the placer, and texts close to a
catalogue example or a tune/dev text were dropped: they measure how placement carries to
wording nobody fitted on. ``probe_dev`` and ``probe3_dev`` may be read when looking for
weaknesses; the ``*_check`` halves are reported in aggregate only.

Prints top-1 (the placer's first type is one of the labels) by text language, and the
share of out-of-scope requests the placer abstains on. A file whose name contains
``volunteers`` holds skills texts instead, labelled with every type the person can
offer: it prints type recall (by language) and precision.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.quality import rounded
from matcher.settings import ModelSettings
from models.factory import build_skill_model
from models.placement import CataloguePlacer, text_language


def load_probe(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [(row["text"], tuple(row["types"])) for row in rows]


def probe_quality(
    rows: list[tuple[str, tuple[str, ...]]], placer: CataloguePlacer
) -> dict[str, Any]:
    placements = placer.predict_needs([text for text, _ in rows])
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    abstained = out_of_scope = 0
    for (text, types), placement in zip(rows, placements, strict=True):
        if not types:
            out_of_scope += 1
            abstained += placement.top is None
            continue
        for key in ("all", text_language(text)):
            totals[key] += 1
            hits[key] += placement.top in types
    return {
        "need_top1": {k: hits[k] / totals[k] for k in totals},
        "need_counts": dict(totals),
        "out_of_scope_abstained": abstained / out_of_scope if out_of_scope else 1.0,
        "out_of_scope": out_of_scope,
    }


def volunteer_probe_quality(
    rows: list[tuple[str, tuple[str, ...]]], placer: CataloguePlacer
) -> dict[str, Any]:
    offered = placer.predict_volunteers([text for text, _ in rows])
    found: Counter[str] = Counter()
    labelled: Counter[str] = Counter()
    predicted = 0
    for (text, types), placed in zip(rows, offered, strict=True):
        predicted += len(placed)
        for key in ("all", text_language(text)):
            labelled[key] += len(types)
            found[key] += len(set(types) & set(placed))
    return {
        "volunteer_recall": {k: found[k] / labelled[k] for k in labelled},
        "volunteer_precision": found["all"] / predicted if predicted else 1.0,
        "labelled_types": dict(labelled),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__)
    parser.add_argument("probe", type=Path, nargs="+", help="JSONL of {text, types}")
    args = parser.parse_args(argv)
    placer = build_skill_model(ModelSettings())
    for path in args.probe:
        measure = volunteer_probe_quality if "volunteers" in path.name else probe_quality
        result = rounded(measure(load_probe(path), placer))
        json.dump({"probe": path.name, "placer": placer.version, **result}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
