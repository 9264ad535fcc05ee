"""The bulk tf-idf transform equals scikit-learn's own, on any text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from models.exceptions import ModelsError
from models.textfeatures import CompiledTfidf

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
