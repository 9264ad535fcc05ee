"""Placing texts in the service catalogue: what a need asks for, what a volunteer offers.

Three signals, fused per service type:
- a scikit-learn classifier (TF-IDF char and word n-grams, logistic regression) trained
  on the catalogue's examples (needs and volunteer profiles kept apart, since residents
  describe problems and volunteers describe professions);
- the catalogue's keyword lexicon (distinctive words coordinators maintain);
- embedders: the nearest catalogue example of each type, so a paraphrase with no shared
  word still lands. An embedder may serve every text against every example, or texts of
  one language against the examples in that language (``language_embedders``: English
  MiniLM for English texts by default, where n-grams carry new wording least well).
A need gets its best type when the fused score clears a threshold, else the placer
abstains; a volunteer gets every type their whole text or one of its clauses clears.
Thresholds are per text language (``PlacementConfig``), chosen by cross-validation. Follows
scikit-learn's fit/predict contract; ``version`` names catalogue, config and embedder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import scipy
import sklearn
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.svm import LinearSVC

from matcher.skills import NeedPlacement
from models.catalogue import Catalogue, ServiceType
from models.embedders import Embedder
from models.exceptions import ModelsError
from models.textfeatures import PACK_BITS, CompiledTfidf, KeyTable, code_points, pack

log = logging.getLogger(__name__)

PLACER_VERSION = "6"
# The layout of the pickled fit in the start-up cache. It changes when the fitted objects
# change shape while placements stay the same, so PLACER_VERSION (which outputs carry)
# need not.
_FIT_STATE_LAYOUT = "3"
# Needs that no volunteer can serve (bus routes, lifts, heating supply) are learned as a
# class of their own, so they are answered honestly instead of going to the nearest trade.
OUT_OF_SCOPE = "_out_of_scope"
_CLAUSE_SPLIT = re.compile(
    r"[，,；;。.!！?？、/|+＋\n]+|\s+and\s+|\s*&\s*|以及|并且|还会|也会|同时"
)

LANGUAGES = ("zh", "en", "mixed")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PlacementConfig:
    """Thresholds are calibrated per language of the text (Chinese, English, mixed), chosen
    by 5-fold cross-validation on the catalogue's own examples plus the tune week, the two
    sources weighted equally (BENCHMARKS.md): a need threshold maximises correct minus
    wrong top placements per text (out-of-scope texts count as wrong when placed); a
    volunteer threshold maximises F2 over types (a missed type loses bookings, an extra
    one rarely causes a wrong booking since the need must be placed in it too).
    The optima came out the same for Chinese and English, because both are placed against
    a catalogue with examples in both; mixed texts are too few to move off the pooled value.
    ``classifier_c`` was chosen the same way (cross-validated top-1). ``volunteer_margin``
    covers a type whose own one-vs-rest SVM is near yes even when the softmax gives most of
    the unit to another type ("pharmacist who gives talks on healthy eating"); it was
    chosen on booking quality in weeks built from the dev probes (``bench.probe_week``):
    -0.15 raised their recall 0.900 -> 0.919 for precision 0.977 -> 0.972, and -0.25 cost
    more precision than it gained. ``volunteer_keyword_margin`` is the weaker yes that
    suffices when the profile names one of the type's keywords: chosen the same way
    (recall 0.926 -> 0.935, precision unchanged; any value from -0.6 down books the same)."""

    need_threshold_zh: float = 0.15
    need_threshold_en: float = 0.15
    need_threshold_mixed: float = 0.15
    second_type_threshold: float = 0.25
    volunteer_threshold_zh: float = 0.40
    volunteer_threshold_en: float = 0.40
    volunteer_threshold_mixed: float = 0.40
    volunteer_margin: float = -0.15
    volunteer_keyword_margin: float = -0.6
    weight_classifier: float = 0.55
    weight_keywords: float = 0.15
    weight_embedding: float = 0.4
    embedding_temperature: float = 0.03
    embedding_gate: float = 0.7
    classifier_temperature: float = 0.15
    classifier_c: float = 2.0
    support_confidence: float = 0.5

    def need_threshold(self, language: str) -> float:
        return float(getattr(self, f"need_threshold_{language}"))

    def volunteer_threshold(self, language: str) -> float:
        return float(getattr(self, f"volunteer_threshold_{language}"))

    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:6]


def text_language(text: str) -> str:
    """'zh', 'en' or 'mixed': by the share of Han characters (U+4E00..U+9FFF) among Han
    and ASCII Latin letters."""
    return text_languages([text])[0]


def text_languages(texts: Sequence[str]) -> list[str]:
    """``text_language`` of each text, with the letters of the whole batch counted at once:
    placing a batch asks this of every text, and two regex scans a text cost more than
    the classifier's arithmetic."""
    if not texts:
        return []
    points = code_points("\x00".join(texts)) - 1  # code_points counts from one
    han = np.concatenate(([0], np.cumsum((points >= 0x4E00) & (points <= 0x9FFF))))
    lower = points | 0x20  # ASCII letters of either case fold onto a..z
    latin = np.concatenate(([0], np.cumsum((lower >= 0x61) & (lower <= 0x7A) & (points < 0x80))))
    ends = np.cumsum([len(t) + 1 for t in texts]) - 1
    starts = ends - [len(t) for t in texts]
    return [
        _language(int(h), int(a))
        for h, a in zip(han[ends] - han[starts], latin[ends] - latin[starts], strict=True)
    ]


def _language(han: int, latin: int) -> str:
    letters = han + latin
    if latin <= 0.1 * letters:
        return "zh"
    if han <= 0.1 * letters:
        return "en"
    return "mixed"


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().strip()


def split_clauses(text: str) -> list[str]:
    return _clauses_of_normalised(normalise(text))


def _clauses_of_normalised(normalised: str) -> list[str]:
    return [c.strip() for c in _CLAUSE_SPLIT.split(normalised) if len(c.strip()) >= 2]


@dataclass
class _Side:
    """One classifier + example bank: for needs or for volunteer profiles."""

    classes: list[str]
    # The fitted pieces, used directly: the Pipeline/FeatureUnion path costs ~15 ms of
    # joblib and validation overhead per call, which dominates when the live worker
    # places one text at a time; and scikit-learn's n-gram counting in Python was two
    # thirds of placement time, so the vectorizers transform in bulk (CompiledTfidf).
    vectorizers: list[CompiledTfidf] = field(default_factory=list)
    coef: FloatArray | None = None
    intercept: FloatArray | None = None

    def decision(self, texts: Sequence[str]) -> FloatArray:
        features = sparse.hstack([v.transform(texts) for v in self.vectorizers], format="csr")
        assert self.intercept is not None
        assert self.coef is not None
        result: FloatArray = np.asarray(features @ self.coef) + self.intercept
        return result

    banks: list[_Bank] = field(default_factory=list)


@dataclass(frozen=True)
class _Bank:
    """Catalogue examples encoded by one of the placer's embedders (which one, and so for
    which language, is ``source``), rows sorted by type so a ``reduceat`` takes each
    type's best."""

    source: int  # position in the placer's embedders
    vectors: npt.NDArray[np.float32]
    type_columns: npt.NDArray[np.int64]  # the type of each group of rows
    group_starts: npt.NDArray[np.int64]  # where each type's rows begin

    def best_per_type(self, queries: npt.NDArray[np.float32], n_types: int) -> FloatArray:
        """Each query's cosine to the nearest example of each type; -1 for a type with
        no example here."""
        best = np.full((len(queries), n_types), -1.0)
        if len(self.vectors):
            sims = queries @ self.vectors.T
            best[:, self.type_columns] = np.maximum.reduceat(sims, self.group_starts, axis=1)
        return best


_ENGLISH_WORD = re.compile(r"[a-z][a-z'\-]+")
_SUFFIXES = ("ings", "ing", "ies", "ied", "ers", "er", "ed", "es", "ly", "s")


@lru_cache(maxsize=1 << 16)  # residents use few distinct words; each is stemmed once
def _stem_word(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _stem_english(text: str) -> str:
    """Crude suffix stripping so "leaking", "leaks" and "leaked" count as one word. Only
    the stems are kept, space-separated: the word vectorizer tokenises them exactly as it
    would tokenise the text with each word stemmed in place (a stem is a word's prefix, so
    it starts where the word did and is followed by the same non-word character)."""
    return " ".join(map(_stem_word, _ENGLISH_WORD.findall(text.lower())))


def _make_features() -> FeatureUnion:
    return FeatureUnion(
        [
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)),
            (
                "words",
                TfidfVectorizer(
                    analyzer="word",
                    token_pattern=_ENGLISH_WORD.pattern,  # stems are what it tokenises
                    preprocessor=_stem_english,
                    ngram_range=(1, 2),
                    sublinear_tf=True,
                ),
            ),
        ]
    )


class CataloguePlacer:
    """Implements the matcher's ``SkillModel`` protocol."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        embedder: Embedder | None = None,
        language_embedders: Mapping[str, Embedder] | None = None,
        config: PlacementConfig | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.embedder = embedder
        self.language_embedders = dict(language_embedders or {})
        unknown = set(self.language_embedders) - set(LANGUAGES)
        if unknown:
            raise ModelsError(f"language_embedders: unknown language(s) {sorted(unknown)}")
        # (language or None for every text, embedder); a bank names its embedder by position.
        self._embedders: list[tuple[str | None, Embedder]] = [
            *([(None, embedder)] if embedder is not None else []),
            *self.language_embedders.items(),
        ]
        self.config = config or PlacementConfig()
        self._keywords = _compile_keywords(catalogue.types)
        self._event_markers = _event_markers(catalogue)
        self._languages = _LanguageNames.of(catalogue.types)
        self._need_side: _Side | None = None
        self._volunteer_side: _Side | None = None
        self._need_cache: dict[str, NeedPlacement] = {}
        self._volunteer_cache: dict[str, dict[str, float]] = {}

    @property
    def version(self) -> str:
        return (
            f"placer{PLACER_VERSION}-cat{self.catalogue.version}.{self.catalogue.fingerprint}"
            f"-{self.config.digest()}-{self._embedder_names()}"
        )

    def _embedder_names(self) -> str:
        names = [f"{language or 'all'}:{e.name}" for language, e in self._embedders]
        return "+".join(names) or "none"

    # --- fit ------------------------------------------------------------------------

    def fit(
        self,
        extra_needs: Sequence[tuple[str, str]] = (),
        extra_volunteers: Sequence[tuple[str, str]] = (),
    ) -> CataloguePlacer:
        """Train on the catalogue (and optional labelled ``(text, type)`` pairs)."""
        need_data: list[tuple[str, tuple[str, ...]]] = [
            (x, (t.id,)) for t in self.catalogue.types for x in _need_texts(t)
        ]
        need_data += [(x, (OUT_OF_SCOPE,)) for x in self.catalogue.out_of_scope]
        need_data += [(x, (t,)) for x, t in extra_needs]
        volunteer_data: list[tuple[str, tuple[str, ...]]] = [
            (x, (t.id,)) for t in self.catalogue.types for x in _volunteer_texts(t)
        ]
        volunteer_data += [(p.text, tuple(p.types)) for p in self.catalogue.combined_profiles]
        volunteer_data += [(x, (t,)) for x, t in extra_volunteers]
        self._need_side = self._fit_side(need_data, range(len(self._embedders)))
        # Language embedders serve needs only. On profiles they raised volunteer type
        # precision (0.80 -> 0.83 on the tune week) but changed no booking, and profiles
        # are split into clauses ("free on weekends") that n-grams are unsure of by
        # nature, so each would cost an encoding.
        self._volunteer_side = self._fit_side(
            volunteer_data, [i for i, (lang, _) in enumerate(self._embedders) if lang is None]
        )
        self._need_cache.clear()
        self._volunteer_cache.clear()
        return self

    def _fit_side(
        self,
        data: Sequence[tuple[str, tuple[str, ...]]],
        sources: Iterable[int],
    ) -> _Side:
        """One linear SVM per type against all others (what LinearSVC does for several
        classes), fitted on a label matrix so a text may teach more than one type. A linear
        SVM fits the catalogue in seconds where logistic regression takes half a minute;
        its margins become probabilities through a tempered softmax."""
        texts = [normalise(x) for x, _ in data]
        binarizer = MultiLabelBinarizer()
        targets = binarizer.fit_transform([types for _, types in data])
        features = _make_features()
        matrix = features.fit_transform(texts)
        classifier = OneVsRestClassifier(LinearSVC(C=self.config.classifier_c, random_state=0))
        classifier.fit(matrix, targets)
        classes = [str(c) for c in binarizer.classes_]
        side = _Side(
            classes,
            vectorizers=[CompiledTfidf(v) for _, v in features.transformer_list],
            # (features, classes), dense: one sparse-dense product scores every type.
            coef=np.ascontiguousarray(np.vstack([e.coef_ for e in classifier.estimators_]).T),
            intercept=np.concatenate([e.intercept_ for e in classifier.estimators_]).astype(
                np.float64
            ),
        )
        column = {c: i for i, c in enumerate(classes)}
        languages = text_languages(texts)
        for source in sources:
            served, embedder = self._embedders[source]
            examples = [
                (text, column[t])
                for text, language, (_, types) in zip(texts, languages, data, strict=True)
                for t in types
                if served is None or language == served
            ]
            side.banks.append(_encode_bank(examples, source, embedder))
        return side

    # --- fitted state, for the start-up cache ---------------------------------------

    @property
    def fit_key(self) -> str:
        """Names a fit by everything it depends on: code, data, settings, libraries."""
        parts = (
            PLACER_VERSION,
            _FIT_STATE_LAYOUT,
            self.catalogue.fingerprint,
            self.config.digest(),
            self._embedder_names(),
            sklearn.__version__,
            np.__version__,
            scipy.__version__,
        )
        return "placer-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def fitted_state(self) -> dict[str, Any]:
        return {
            "key": self.fit_key,
            "need": self._side("need"),
            "volunteer": self._side("volunteer"),
        }

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("key") != self.fit_key:
            raise ModelsError("cached placer was fitted from something else")
        self._need_side, self._volunteer_side = state["need"], state["volunteer"]
        self._need_cache.clear()
        self._volunteer_cache.clear()

    # --- predict --------------------------------------------------------------------

    def type_scores(self, texts: Sequence[str], *, side: str) -> FloatArray:
        """Fused score of every type for every text: shape (len(texts), n_types).

        Each distinct text is scored once: volunteer profiles are split into clauses, and
        clauses such as "党员" or "周末有空" recur across many profiles."""
        return self._distinct_scores([normalise(t) for t in texts], self._side(side))

    def _distinct_scores(self, normalised: Sequence[str], placed: _Side) -> FloatArray:
        if not normalised:
            return np.zeros((0, len(placed.classes)))
        row_of: dict[str, int] = {}
        rows = [row_of.setdefault(t, len(row_of)) for t in normalised]
        if len(row_of) < len(normalised):
            return self._fused(list(row_of), placed)[rows]
        return self._fused(normalised, placed)

    def _fused(
        self,
        normalised: Sequence[str],
        placed: _Side,
        keyword: FloatArray | None = None,
        margins: FloatArray | None = None,
    ) -> FloatArray:
        cfg = self.config
        if margins is None:
            margins = placed.decision(normalised)
        probs = _softmax(margins, cfg.classifier_temperature)
        if keyword is None:
            keyword = self._keyword_hits(normalised, placed.classes)
        fused = cfg.weight_classifier * probs + cfg.weight_keywords * keyword
        weights = np.full(len(normalised), cfg.weight_classifier + cfg.weight_keywords)
        without: FloatArray = fused / weights[:, None]
        if not placed.banks:
            return without
        # An embedder costs milliseconds a text where the rest costs microseconds: it is
        # asked only about texts that n-grams and keywords leave unsure.
        unsure: list[int] = np.flatnonzero(without.max(axis=1) < cfg.embedding_gate).tolist()
        languages = dict(zip(unsure, text_languages([normalised[i] for i in unsure]), strict=True))
        for bank in placed.banks:
            served, embedder = self._embedders[bank.source]
            rows = [i for i, language in languages.items() if served in (None, language)]
            if not rows:
                continue
            try:
                queries = embedder.encode([normalised[i] for i in rows], role="query")
            except Exception as exc:  # a failing embedder costs its signal, not the placement
                # The type of the failure only: the texts are residents' words.
                log.warning(
                    "embedder %s failed (%s): %d text(s) placed without it",
                    embedder.name,
                    type(exc).__name__,
                    len(rows),
                )
                continue
            best = bank.best_per_type(queries, len(placed.classes))
            fused[rows] += cfg.weight_embedding * _softmax(best, cfg.embedding_temperature)
            weights[rows] += cfg.weight_embedding
        result: FloatArray = fused / weights[:, None]
        return result

    def _side(self, side: str) -> _Side:
        placed = self._need_side if side == "need" else self._volunteer_side
        if placed is None:
            raise ModelsError("CataloguePlacer is not fitted: call fit() first")
        return placed

    def _keyword_hits(self, texts: Sequence[str], classes: Sequence[str]) -> FloatArray:
        hits = np.zeros((len(texts), len(classes)))
        column = {type_id: j for j, type_id in enumerate(classes)}
        for i, found in enumerate(self._keywords.types_in_each(texts)):
            for type_id in found:
                if type_id in column:
                    hits[i, column[type_id]] = 1.0
        return hits

    def predict_needs(self, texts: Sequence[str]) -> list[NeedPlacement]:
        placed = self._side("need")
        normalised = [normalise(t) for t in texts]
        scores = self._distinct_scores(normalised, placed)
        # One sort for the batch: sorting row by row was a tenth of placing a batch.
        ranked = np.argsort(-scores, axis=1, kind="stable")[:, :3]
        placements = [
            self._need_placement(row, order, placed.classes, self.config.need_threshold(language))
            for row, order, language in zip(scores, ranked, text_languages(normalised), strict=True)
        ]
        return [self._with_support(p, t) for p, t in zip(placements, normalised, strict=True)]

    def _with_support(self, placement: NeedPlacement, normalised: str) -> NeedPlacement:
        rule = self.catalogue.support
        if rule is None or not placement.types or not self._event_markers:
            return placement
        if any(t == rule.support_type for t, _ in placement.types):
            return placement
        if not any(marker.search(normalised) for marker in self._event_markers):
            return placement
        confidence = _round(placement.types[0][1] * self.config.support_confidence)
        return NeedPlacement(placement.types, ((rule.support_type, confidence),))

    def _need_placement(
        self,
        row: FloatArray,
        order: npt.NDArray[np.intp],
        classes: Sequence[str],
        threshold: float,
    ) -> NeedPlacement:
        """``order``: the row's three best types, best first."""
        top = int(order[0])
        if classes[top] == OUT_OF_SCOPE or row[top] < threshold:
            return NeedPlacement(())
        chosen = [(classes[top], _round(row[top]))]
        for k in order[1:3]:
            if classes[int(k)] != OUT_OF_SCOPE and row[k] >= self.config.second_type_threshold:
                chosen.append((classes[int(k)], _round(row[k])))
        return NeedPlacement(tuple(chosen))

    def predict_volunteers(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Every type that the whole text or one of its clauses clears. Each distinct
        clause is scored once, and the whole text's keyword hits are those of its clauses
        plus the few keywords that span a clause boundary, so the lexicon reads each text
        once."""
        if not texts:
            return []
        placed = self._side("volunteer")
        wholes = [normalise(t) for t in texts]
        clauses_per_text = [_clauses_of_normalised(w) or [w] for w in wholes]
        row_of: dict[str, int] = {}
        rows_per_text = [
            [row_of.setdefault(c, len(row_of)) for c in clauses] for clauses in clauses_per_text
        ]
        clauses = list(row_of)
        # Each text's clause rows laid end to end: per-text maxima in one reduceat.
        flat = np.fromiter((r for rows in rows_per_text for r in rows), dtype=np.int64)
        starts = np.cumsum([0, *(len(rows) for rows in rows_per_text[:-1])])
        clause_hits = self._keyword_hits(clauses, placed.classes)
        clause_margins = placed.decision(clauses)
        clause_scores = self._fused(clauses, placed, clause_hits, clause_margins)
        whole_hits = np.maximum.reduceat(clause_hits[flat], starts, axis=0)
        column = {type_id: j for j, type_id in enumerate(placed.classes)}
        for i, whole in enumerate(wholes):
            for type_id in self._keywords.types_spanning(whole):
                if type_id in column:
                    whole_hits[i, column[type_id]] = 1.0
        whole_margins = placed.decision(wholes)
        whole_scores = self._fused(wholes, placed, whole_hits, whole_margins)
        best = np.maximum(whole_scores, np.maximum.reduceat(clause_scores[flat], starts, axis=0))
        # The softmax shares one unit among types, so a clause that covers two trades
        # ("水电都干过") gives each about half; each type's own SVM margin says yes to
        # both. Margins clear this only where the catalogue teaches a combination.
        margin = np.maximum(
            whole_margins, np.maximum.reduceat(clause_margins[flat], starts, axis=0)
        )
        thresholds = np.array(
            [self.config.volunteer_threshold(language) for language in text_languages(wholes)]
        )[:, None]
        cfg = self.config
        # A catalogue keyword in a profile ("pharmacist", "私教") is near-certain evidence
        # of the service, so its type needs only a weak yes from its own SVM.
        named = (whole_hits > 0) & (margin >= cfg.volunteer_keyword_margin)
        covered = (best >= thresholds) | (margin >= cfg.volunteer_margin) | named
        classes = placed.classes
        covered &= self._languages.offered(wholes, classes)
        confidence = np.maximum(best, thresholds)
        result: list[dict[str, float]] = [{} for _ in texts]
        for i, j in zip(*np.nonzero(covered), strict=True):
            result[i][classes[j]] = _round(confidence[i, j])
        return result

    # --- SkillModel protocol (cached by text) ----------------------------------------

    def place_need(self, text: str) -> NeedPlacement:
        if text not in self._need_cache:
            self._need_cache[text] = self.predict_needs([text])[0]
        return self._need_cache[text]

    def place_volunteer(self, skills: str) -> Mapping[str, float]:
        if skills not in self._volunteer_cache:
            self._volunteer_cache[skills] = self.predict_volunteers([skills])[0]
        return self._volunteer_cache[skills]

    def prepare(self, need_texts: Sequence[str], skill_texts: Sequence[str]) -> None:
        new_needs = list(dict.fromkeys(t for t in need_texts if t not in self._need_cache))
        for text, placement in zip(new_needs, self.predict_needs(new_needs), strict=True):
            self._need_cache[text] = placement
        new_skills = list(dict.fromkeys(t for t in skill_texts if t not in self._volunteer_cache))
        for text, types in zip(new_skills, self.predict_volunteers(new_skills), strict=True):
            self._volunteer_cache[text] = types

    def get_params(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "embedder": self.embedder,
            "language_embedders": self.language_embedders,
        }


def _encode_bank(examples: Sequence[tuple[str, int]], source: int, embedder: Embedder) -> _Bank:
    """``examples``: (normalised text, type column). Each distinct text is encoded once."""
    if not examples:
        empty = np.zeros(0, dtype=np.int64)
        return _Bank(source, np.zeros((0, embedder.dim), dtype=np.float32), empty, empty)
    ordered = sorted(examples, key=lambda example: example[1])
    distinct = list(dict.fromkeys(text for text, _ in ordered))
    row_of = {text: i for i, text in enumerate(distinct)}
    vectors = embedder.encode(distinct, role="passage")
    columns = np.array([c for _, c in ordered], dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
    return _Bank(
        source,
        np.ascontiguousarray(vectors[[row_of[t] for t, _ in ordered]]),
        columns[starts],
        starts,
    )


def _need_texts(service: ServiceType) -> list[str]:
    return [service.name_zh, service.name_en, *service.keywords, *service.need_examples]


def _volunteer_texts(service: ServiceType) -> list[str]:
    return [service.name_zh, service.name_en, *service.keywords, *service.volunteer_examples]


@dataclass(frozen=True)
class _Lexicon:
    """Keyword -> type. Two-character keywords (most Chinese ones: 跳闸, 换药) are found
    for a whole batch in numpy. Longer ones are bucketed by their first three characters,
    so one pass over a text tries only the keywords that can start at each position;
    inside a bucket, one dictionary lookup per keyword length. Latin keywords are then
    confirmed with word boundaries ("ENT" must not fire inside "parents")."""

    type_of: dict[str, str]
    lengths: dict[str, tuple[int, ...]]  # first three characters -> keyword lengths
    latin: dict[str, re.Pattern[str]]
    # Packed as code points, each kept apart for keywords with a non-Latin character and
    # all-Latin ones: the two-character keywords, and the first three characters of the
    # longer ones.
    pairs: KeyTable
    latin_pairs: KeyTable
    starts: KeyTable
    latin_starts: KeyTable
    # Keywords that a clause split would cut ("head and neck surgeon"): looked for in
    # whole texts, whose other hits are the union of their clauses' hits.
    spanning: tuple[tuple[str, str], ...] = ()

    def types_spanning(self, text: str) -> set[str]:
        found: set[str] = set()
        for word, service_type in self.spanning:
            if word in text:
                pattern = self.latin.get(word)
                if pattern is None or pattern.search(text):
                    found.add(service_type)
        return found

    def types_in_each(self, texts: Sequence[str]) -> list[set[str]]:
        """The types whose keywords occur in each text. numpy finds, over the whole batch,
        the two-character keywords and the positions whose three characters begin a
        longer keyword (a small share of all positions); only those are tried in Python."""
        found: list[set[str]] = [set() for _ in texts]
        if not texts:
            return found
        # A separator no keyword contains: no candidate word runs from one text into the next.
        joined = "\x00".join(texts)
        points = code_points(joined)
        pairs = (points[:-1] << PACK_BITS) | points[1:]
        triples = (pairs[:-1] << PACK_BITS) | points[2:]
        # A Latin keyword counts only as a whole word, so it need only be tried where a
        # word starts: that skips most positions of English text.
        chars = points - 1
        in_word = ((chars >= 97) & (chars <= 122)) | ((chars >= 48) & (chars <= 57))
        word_start = np.concatenate(([True], ~in_word[:-1]))
        hits = np.flatnonzero(
            self.pairs.contains(pairs) | (word_start[:-1] & self.latin_pairs.contains(pairs))
        )
        candidates = np.flatnonzero(
            self.starts.contains(triples) | (word_start[:-2] & self.latin_starts.contains(triples))
        )
        text_starts = np.cumsum([0, *(len(t) + 1 for t in texts[:-1])])
        for i, owner in zip(hits.tolist(), _owners(text_starts, hits), strict=True):
            self._add(found[owner], joined[i : i + 2], texts[owner])
        type_of, buckets = self.type_of, self.lengths
        for i, owner in zip(candidates.tolist(), _owners(text_starts, candidates), strict=True):
            here = found[owner]
            for length in buckets[joined[i : i + 3]]:
                word = joined[i : i + length]
                if word in type_of and type_of[word] not in here:
                    self._add(here, word, texts[owner])
        return found

    def _add(self, found: set[str], word: str, text: str) -> None:
        pattern = self.latin.get(word)
        if pattern is None or pattern.search(text):
            found.add(self.type_of[word])


@dataclass(frozen=True)
class _LanguageNames:
    """The language services that each profile names. Interpreting and translation read
    alike in every language, and most of the catalogue's examples are of English; so
    "Korean native speaker, can interpret" scores high for English interpreting too. A
    profile that names a language offers only the language services it names; one that
    names none is left to the model."""

    # Any name as plain text, without word edges: a literal alternation, ten times as
    # fast as one whose branches start with a lookbehind. Most profiles name no language
    # and stop there; the others are read again with word edges, one language at a time.
    any_name: re.Pattern[str] | None
    names: tuple[tuple[str, re.Pattern[str]], ...]  # language service -> its names

    @classmethod
    def of(cls, types: Sequence[ServiceType]) -> _LanguageNames:
        names = tuple(
            (service.id, _any_of([normalise(n) for n in service.language_names]))
            for service in types
            if service.language_names
        )
        every = [re.escape(normalise(n)) for service in types for n in service.language_names]
        return cls(re.compile("|".join(every)) if every else None, names)

    def offered(self, normalised: Sequence[str], classes: Sequence[str]) -> BoolArray:
        """(text, type) -> False where the text names languages and not this one."""
        allowed = np.ones((len(normalised), len(classes)), dtype=bool)
        if self.any_name is None:
            return allowed
        column = {type_id: j for j, type_id in enumerate(classes)}
        for i, text in enumerate(normalised):
            if not self.any_name.search(text):
                continue
            named = [type_id for type_id, pattern in self.names if pattern.search(text)]
            if named:
                for type_id, _ in self.names:
                    if type_id in column and type_id not in named:
                        allowed[i, column[type_id]] = False
        return allowed


def _any_of(words: Sequence[str]) -> re.Pattern[str]:
    """Any of the words; a Latin one only as a whole word ("Korean", not "Koreana")."""
    return re.compile("|".join(_latin_word(w) if w.isascii() else re.escape(w) for w in words))


def _owners(text_starts: npt.NDArray[np.int64], positions: npt.NDArray[np.intp]) -> list[int]:
    """The text each position of the joined batch belongs to."""
    owners: list[int] = (np.searchsorted(text_starts, positions, side="right") - 1).tolist()
    return owners


def _compile_keywords(types: Sequence[ServiceType]) -> _Lexicon:
    type_of: dict[str, str] = {}
    for service in types:
        for keyword in service.keywords:
            word = normalise(keyword)
            if len(word) >= 2:
                type_of.setdefault(word, service.id)
    lengths: dict[str, set[int]] = {}
    for word in type_of:
        if len(word) >= 3:
            lengths.setdefault(word[:3], set()).add(len(word))
    latin = {w: re.compile(_latin_word(w)) for w in type_of if w.isascii()}
    spanning = tuple((w, t) for w, t in type_of.items() if split_clauses(w) != [w])
    short = [w for w in type_of if len(w) == 2]
    long = [w for w in type_of if len(w) >= 3]
    return _Lexicon(
        type_of,
        {k: tuple(sorted(v)) for k, v in lengths.items()},
        latin,
        pairs=_packed(w for w in short if w not in latin),
        latin_pairs=_packed(w for w in short if w in latin),
        starts=_packed(w[:3] for w in long if w not in latin),
        latin_starts=_packed(w[:3] for w in long if w in latin),
        spanning=spanning,
    )


def _packed(grams: Iterable[str]) -> KeyTable:
    return KeyTable(np.array(sorted({pack(g) for g in grams}), dtype=np.int64))


# A Latin word's edges. Not \b: Chinese characters count as word characters there, so
# "PICC" would never match inside "带着PICC管".
_LATIN_START = r"(?<![a-z0-9])"
_LATIN_END = r"(?![a-z0-9])"


def _latin_word(word: str) -> str:
    """A Latin keyword as a whole word."""
    return rf"{_LATIN_START}{re.escape(word)}{_LATIN_END}"


def _event_markers(catalogue: Catalogue) -> tuple[re.Pattern[str], ...]:
    """Patterns that mark a need as a public event; any one matching suffices.

    Kept apart (Chinese words, Latin words, audiences) because one alternation whose
    branches each begin with a lookbehind defeats the regex engine's literal scan: the
    split ran 7x faster on the replay's needs."""
    rule = catalogue.support
    if rule is None:
        return ()
    markers = _longest_first(rule.markers)
    audience = _longest_first(rule.audience)
    parts = []
    if han := [re.escape(w) for w in markers if not w.isascii()]:
        parts.append("|".join(han))
    if latin := [re.escape(w) for w in markers if w.isascii()]:
        parts.append(rf"{_LATIN_START}(?:{'|'.join(latin)}){_LATIN_END}")
    if audience:
        nouns = "|".join(re.escape(w) + (_LATIN_END if w.isascii() else "") for w in audience)
        # Ten or more: "2 people" to carry a sofa is a headcount, not an audience.
        parts.append(rf"(?<![0-9])[1-9][0-9]{{1,3}}\s*(?:来|多|余)?\s*(?:个)?(?:{nouns})")
    return tuple(re.compile(p) for p in parts)


def _longest_first(words: Iterable[str]) -> list[str]:
    return sorted({normalise(w) for w in words if w.strip()}, key=len, reverse=True)


def _softmax(scores: FloatArray, temperature: float) -> FloatArray:
    scaled = (scores - scores.max(axis=1, keepdims=True)) / temperature
    exp = np.exp(scaled)
    result: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return result


def _round(value: float) -> float:
    return round(float(value), 4)


# Each catalogue edit leaves a fit of tens of MB behind; a few recent ones cover a rollback.
_CACHED_FITS = 3


def _prune(cache_dir: Path, keep: int) -> None:
    fits = sorted(cache_dir.glob("placer-*.joblib"), key=lambda p: p.stat().st_mtime)
    for old in fits[:-keep]:
        old.unlink(missing_ok=True)


def load_or_fit(placer: CataloguePlacer, cache_dir: Path) -> CataloguePlacer:
    """The placer fitted, from ``cache_dir`` when an identical fit is stored there, else
    fitted now and stored. A file that cannot be read or written costs a refit, never a
    failure: the cache only saves start-up time."""
    path = cache_dir / f"{placer.fit_key}.joblib"
    try:
        placer.restore(joblib.load(path))
        return placer
    except FileNotFoundError:
        pass
    except Exception as exc:  # a damaged cache file of any kind means refit
        log.warning("placer cache %s unreadable (%s): refitting", path.name, type(exc).__name__)
    placer.fit()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        joblib.dump(placer.fitted_state(), partial)
        partial.replace(path)  # atomic: concurrent workers never read half a file
        _prune(cache_dir, keep=_CACHED_FITS)
    except OSError as exc:
        log.warning("placer cache %s not written: %s", cache_dir, exc.strerror)
    return placer
