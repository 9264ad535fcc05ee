"""The bulk tf-idf transform equals scikit-learn's own, on any text, and its key table
finds exactly the keys it holds."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from models.exceptions import ModelsError
from models.textfeatures import CompiledTfidf, KeyTable

CORPUS = [
    "家里的水管漏水了 leaking pipe",
    "电工，会修水管; also plumbing and tiling",
    "a b c d e fixing lights",
    "老人想学用智能手机 smartphone 视频",
    "x",
    "i'm a self-employed electrician   and  plumber",
]
TEXTS = st.text(alphabet=st.sampled_from(list("水管漏电工 ab'-cdelxyz\t\n,.;I")), max_size=40)


def _vectorizers() -> list[TfidfVectorizer]:
    return [
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)),
        TfidfVectorizer(
            analyzer="word",
            token_pattern=r"[a-z][a-z'\-]+",
            ngram_range=(1, 2),
            sublinear_tf=True,
        ),
        TfidfVectorizer(analyzer="word", ngram_range=(2, 3)),
    ]


FITTED = [v.fit(CORPUS) for v in _vectorizers()]


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=5))
def test_transform_equals_scikit_learn(texts: list[str]) -> None:
    for vectorizer in FITTED:
        expected = vectorizer.transform(texts).toarray()
        actual = CompiledTfidf(vectorizer).transform(texts).toarray()
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def test_empty_batch_and_unknown_words() -> None:
    compiled = CompiledTfidf(FITTED[0])
    assert compiled.transform([]).shape == (0, len(FITTED[0].vocabulary_))
    assert CompiledTfidf(FITTED[2]).transform(["ΩΩΩ 水"]).nnz == 0


def test_unsupported_vectorizer_is_refused() -> None:
    char = TfidfVectorizer(analyzer="char", ngram_range=(1, 2)).fit(CORPUS)
    with pytest.raises(ModelsError, match="analyzer 'char'"):
        CompiledTfidf(char)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=30), min_size=1, max_size=5))
def test_transform_equals_scikit_learn_on_any_unicode(texts: list[str]) -> None:
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)).fit([*CORPUS, *texts])
    expected = vectorizer.transform(texts).toarray()
    actual = CompiledTfidf(vectorizer).transform(texts).toarray()
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


KEYS = st.integers(min_value=0, max_value=2**63 - 1)
# Keys alike in their low bits, or in their high bits, are the ones a weak hash would
# pile into one run of slots.
CROWDED_KEYS = st.one_of(
    KEYS, st.integers(min_value=0, max_value=2**20).map(lambda k: k << 40), st.integers(0, 64)
)


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(CROWDED_KEYS, unique=True, max_size=300),
    others=st.lists(CROWDED_KEYS, max_size=300),
)
def test_key_table_finds_each_key_where_it_is_and_nothing_else(
    keys: list[int], others: list[int]
) -> None:
    table = KeyTable(np.array(keys, dtype=np.int64))
    position = {key: i for i, key in enumerate(keys)}
    queries = np.array([*keys, *others], dtype=np.int64)
    expected = [position.get(q, -1) for q in queries.tolist()]
    assert table.find(queries).tolist() == expected
    assert table.contains(queries).tolist() == [e >= 0 for e in expected]
    unpickled: KeyTable = pickle.loads(pickle.dumps(table))
    assert unpickled.find(queries).tolist() == expected


def test_key_table_refuses_repeated_keys() -> None:
    with pytest.raises(ModelsError, match="distinct"):
        KeyTable(np.array([3, 5, 3], dtype=np.int64))


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_word_transform_equals_scikit_learn_on_any_unicode(texts: list[str]) -> None:
    corpus = [*CORPUS, *texts]
    vectorizer = TfidfVectorizer(analyzer="word", ngram_range=(1, 3)).fit(corpus)
    expected = vectorizer.transform(texts).toarray()
    actual = CompiledTfidf(vectorizer).transform(texts).toarray()
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def test_a_token_pattern_that_matches_spaces_still_equals_scikit_learn() -> None:
    vectorizer = TfidfVectorizer(analyzer="word", token_pattern=r"[a-z]+ [a-z]+").fit(CORPUS)
    texts = ["fixing lights and leaking pipe", "a b c d e"]
    expected = vectorizer.transform(texts).toarray()
    actual = CompiledTfidf(vectorizer).transform(texts).toarray()
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)
