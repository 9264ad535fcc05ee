"""How well the placer generalises to new wording (``python -m bench.catalogue_cv``).

K-fold cross-validation over the catalogue's own need examples: each fold's examples are
taken out of the catalogue, the placer is fitted on the rest, and the held-out examples
are placed. Top-1 by text language, and abstentions. Folds are fixed by a hash of the
text, so runs compare. This measures understanding of unseen phrasing without touching
any labelled week.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Mapping
from typing import Any

from matcher.settings import ModelSettings
from models.catalogue import Catalogue, load_catalogue
from models.embedders import Embedder
from models.factory import language_embedders
from models.placement import CataloguePlacer, PlacementConfig, text_language


def _fold(text: str, folds: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % folds


def _without_fold(catalogue: Catalogue, fold: int, folds: int) -> Catalogue:
    types = [
        t.model_copy(
            update={
                "examples_need_zh": [x for x in t.examples_need_zh if _fold(x, folds) != fold],
                "examples_need_en": [x for x in t.examples_need_en if _fold(x, folds) != fold],
            }
        )
        for t in catalogue.types
    ]
    return catalogue.model_copy(update={"types": types})


def cross_validate(
    folds: int = 5,
    config: PlacementConfig | None = None,
    embedders: Mapping[str, Embedder] | None = None,
) -> dict[str, Any]:
    """``embedders``: the language embedders of the placer measured (none by default)."""
    catalogue = load_catalogue()
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    abstained: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    confused: Counter[str] = Counter()
    misses: Counter[str] = Counter()
    for fold in range(folds):
        placer = CataloguePlacer(
            _without_fold(catalogue, fold, folds), language_embedders=embedders, config=config
        ).fit()
        held = [
            (x, t.id) for t in catalogue.types for x in t.need_examples if _fold(x, folds) == fold
        ]
        placements = placer.predict_needs([x for x, _ in held])
        for (text, type_id), placement in zip(held, placements, strict=True):
            for key in ("all", text_language(text)):
                totals[key] += 1
                hits[key] += placement.top == type_id
                abstained[key] += placement.top is None
            by_type[type_id] += 1
            if placement.top != type_id:
                misses[type_id] += 1
                confused[f"{type_id} -> {placement.top or 'abstained'}"] += 1
    return {
        "folds": folds,
        "examples": dict(totals),
        "top1": {k: round(hits[k] / totals[k], 3) for k in totals},
        "abstained": {k: round(abstained[k] / totals[k], 3) for k in totals},
        "weakest_types": {
            t: round(1 - misses[t] / by_type[t], 3)
            for t, _ in sorted(misses.items(), key=lambda m: -m[1] / by_type[m[0]])[:15]
        },
        "confusions": dict(confused.most_common(25)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catalogue_cv", description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    embedders = language_embedders(ModelSettings())
    json.dump(cross_validate(args.folds, embedders=embedders), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
