"""A fitted ``TfidfVectorizer``'s transform, done in bulk.

scikit-learn builds n-grams with a ``while`` loop and counts them one dictionary lookup at a
time in Python; on this service's short texts that is two thirds of placement time. Here
n-grams come from list comprehensions, vocabulary lookups from ``map`` (a C loop), and
counting, sublinear tf, idf and the l2 norm from scipy and numpy over the whole batch. The
result equals the vectorizer's own ``transform`` (tests check it on random texts); fitting
stays scikit-learn's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from models.exceptions import ModelsError


class CompiledTfidf:
    """Transform-only twin of a fitted vectorizer with ``analyzer`` 'char_wb' or 'word'."""

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        if vectorizer.norm != "l2" or not vectorizer.use_idf or vectorizer.stop_words:
            raise ModelsError("CompiledTfidf supports l2-normalised tf-idf without stop words")
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._idf: npt.NDArray[np.float64] = np.asarray(vectorizer.idf_, dtype=np.float64)
        self._sublinear = bool(vectorizer.sublinear_tf)
        self._preprocess: Callable[[str], str] = vectorizer.build_preprocessor()
        low, high = vectorizer.ngram_range
        self._keys: _CharKeys | _WordKeys | None = None
        self._grams: Callable[[str], list[str]]
        if vectorizer.analyzer == "char_wb":
            self._grams = _CharWbGrams(low, high)
            if 1 <= low <= high <= _MAX_PACKED:
                self._keys = _CharKeys(self._vocabulary, low, high)
        elif vectorizer.analyzer == "word":
            pattern = re.compile(vectorizer.token_pattern)
            self._grams = _WordGrams(pattern, low, high)
            self._keys = _WordKeys.of(self._vocabulary, pattern, low, high)
        else:
            raise ModelsError(f"CompiledTfidf: analyzer {vectorizer.analyzer!r} not supported")

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        if self._keys is not None:
            rows, columns = self._keys.lookup([self._preprocess(t) for t in texts])
        else:
            rows, columns = self._lookup(texts)
        known = columns >= 0
        # COO -> CSR sums the repeated (row, column) pairs: those are the counts.
        counts = sparse.csr_matrix(
            (np.ones(int(known.sum())), (rows[known], columns[known])),
            shape=(len(texts), len(self._idf)),
        )
        counts.sum_duplicates()
        if self._sublinear:
            np.log(counts.data, out=counts.data)
            counts.data += 1.0
        counts.data *= self._idf[counts.indices]
        if not texts:
            return counts
        result: sparse.csr_matrix = normalize(counts, norm="l2", copy=False)
        return result

    def _lookup(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        get = self._vocabulary.get
        ids: list[int] = []
        ends: list[int] = []
        for text in texts:
            ids.extend(map(get, self._grams(self._preprocess(text)), repeat(-1)))
            ends.append(len(ids))
        columns = np.asarray(ids, dtype=np.int64)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), np.diff(np.asarray([0, *ends])))
        return rows, columns


# Character n-grams up to three long are packed into one integer, 21 bits per code point
# (plus one, so shorter n-grams never collide with longer ones), and looked up in a hash
# table of the vocabulary's keys: n-gram building and lookup for a whole batch in numpy.
_MAX_PACKED = 3
PACK_BITS = 21


class _CharKeys:
    def __init__(self, vocabulary: dict[str, int], low: int, high: int) -> None:
        self._sizes = range(low, high + 1)
        self._table = KeyTable(np.array([pack(g) for g in vocabulary], dtype=np.int64))
        # A trailing -1: the column that a key found nowhere (index -1) reads.
        self._columns = np.array([*vocabulary.values(), -1], dtype=np.int64)

    def lookup(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(text row, vocabulary column or -1) for every n-gram of every text, with
        scikit-learn's char_wb rules: each whitespace-separated word padded by one space on
        each side, n-grams never crossing a padded word's edge. A padded word is at least
        three characters long, so up to n = 3 scikit-learn's short-word rule never applies."""
        words = [w for t in texts for w in t.split()]
        word_text = np.repeat(
            np.arange(len(texts), dtype=np.int64), [len(t.split()) for t in texts]
        )
        if not words:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        points = code_points("".join(f" {w} " for w in words))
        lengths = np.array([len(w) + 2 for w in words], dtype=np.int64)
        word_of = np.repeat(np.arange(len(words), dtype=np.int64), lengths)
        rows: list[npt.NDArray[np.int64]] = []
        columns: list[npt.NDArray[np.int64]] = []
        for n in self._sizes:
            keys, starts = _runs(points, word_of, n, 1 << PACK_BITS)
            columns.append(self._columns[self._table.find(keys)])
            rows.append(word_text[word_of[starts]])
        return np.concatenate(rows), np.concatenate(columns)


class _WordKeys:
    """Word n-grams as integers: each known token a digit from 1 (0 for a token the
    vocabulary lacks), an n-gram its tokens' digits in base (known tokens + 1), looked up in
    a KeyTable. A batch's n-grams are never built as strings: joining them cost more than
    looking them up."""

    def __init__(
        self,
        pattern: re.Pattern[str],
        tokens: dict[str, int],
        grams: list[list[str]],
        columns: list[int],
        sizes: range,
    ) -> None:
        self._pattern = pattern
        self._tokens = tokens
        self._sizes = sizes
        self._base = len(tokens) + 1
        digits = [[tokens[t] for t in gram] for gram in grams]
        self._table = KeyTable(np.array([self._key(d) for d in digits], dtype=np.int64))
        # A trailing -1: the column that an n-gram found nowhere (index -1) reads.
        self._columns = np.array([*columns, -1], dtype=np.int64)

    @classmethod
    def of(
        cls, vocabulary: dict[str, int], pattern: re.Pattern[str], low: int, high: int
    ) -> _WordKeys | None:
        """None where an entry would not split back into the tokens that made it (a token
        pattern that matches spaces), or keys could overflow: the string path then runs."""
        grams = [g.split(" ") for g in vocabulary]
        if any(pattern.findall(g) != parts for g, parts in zip(vocabulary, grams, strict=True)):
            return None
        tokens: dict[str, int] = {}
        for gram in grams:
            for token in gram:
                tokens.setdefault(token, len(tokens) + 1)
        if (len(tokens) + 1) ** high >= 2**62:
            return None
        return cls(pattern, tokens, grams, list(vocabulary.values()), range(low, high + 1))

    def _key(self, digits: Sequence[int]) -> int:
        key = 0
        for digit in digits:
            key = key * self._base + digit
        return key

    def lookup(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(text row, vocabulary column or -1) for every n-gram of every text, as
        scikit-learn's word analyzer makes them: n-grams of consecutive tokens of one text."""
        find, digit_of = self._pattern.findall, self._tokens.get
        found: list[int] = []
        counts: list[int] = []
        for text in texts:
            tokens = find(text)
            found.extend(map(digit_of, tokens, repeat(0)))
            counts.append(len(tokens))
        digits = np.asarray(found, dtype=np.int64)
        text_of = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
        rows: list[npt.NDArray[np.int64]] = []
        columns: list[npt.NDArray[np.int64]] = []
        for n in self._sizes:
            keys, starts = _runs(digits, text_of, n, self._base)
            columns.append(self._columns[self._table.find(keys)])
            rows.append(text_of[starts])
        return np.concatenate(rows), np.concatenate(columns)


def _runs(
    digits: npt.NDArray[np.int64], group_of: npt.NDArray[np.int64], n: int, base: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Every run of ``n`` consecutive digits inside one group (a padded word's characters,
    a text's tokens), as its digits read in ``base`` and where it starts. A run holding a
    0 (a token the vocabulary lacks) is left out: its key would read as a shorter run's."""
    count = len(digits) - n + 1
    if count <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    key = digits[:count].copy()
    keep = (group_of[:count] == group_of[n - 1 : n - 1 + count]) & (key > 0)
    for k in range(1, n):
        following = digits[k : k + count]
        key = key * base + following
        keep &= following > 0
    starts = np.flatnonzero(keep)
    return key[starts], starts


def code_points(text: str) -> npt.NDArray[np.int64]:
    """Each character's code point plus one, the digits that ``pack`` uses."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64) + 1


def pack(gram: str) -> int:
    """Up to three characters as one integer: their ``code_points`` as digits in base
    2 ** ``PACK_BITS`` (a shift and an or, since a digit fits in ``PACK_BITS`` bits), the
    key ``_runs`` makes for the same characters."""
    key = 0
    for char in gram:
        key = (key << PACK_BITS) | (ord(char) + 1)
    return key


class KeyTable:
    """Where each key of a batch sits in a fixed array of distinct keys, or -1.

    An open-addressing hash table (linear probing, at most a quarter full) probed for the
    whole batch at once in numpy: most keys settle at the first probe, where a binary
    search over the 141,000 n-grams of the fitted vectorizers takes 17 dependent steps
    each. The table is rebuilt on unpickling rather than stored: it is eight times the
    size of the keys, and builds in a few hundredths of a second."""

    def __init__(self, keys: npt.NDArray[np.int64]) -> None:
        self.keys = np.asarray(keys, dtype=np.int64)
        self._build()

    def __getstate__(self) -> dict[str, npt.NDArray[np.int64]]:
        return {"keys": self.keys}

    def __setstate__(self, state: dict[str, npt.NDArray[np.int64]]) -> None:
        self.keys = state["keys"]
        self._build()

    def find(self, values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Each value's index in ``keys``, -1 where it is not there."""
        slot = self._slot_of(values)
        at = self._at[slot]
        where: npt.NDArray[np.int64] = np.where(self._key[slot] == values, at, -1)
        # Still open: a slot held another key, so the value may sit further along.
        pending = np.flatnonzero((where < 0) & (at >= 0))
        slot, values = slot[pending], values[pending]
        while pending.size:
            slot = (slot + 1) & self._mask
            at = self._at[slot]
            hit = self._key[slot] == values
            where[pending[hit]] = at[hit]
            going_on = ~hit & (at >= 0)
            pending, slot, values = pending[going_on], slot[going_on], values[going_on]
        return where

    def contains(self, values: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        found: npt.NDArray[np.bool_] = self.find(values) >= 0
        return found

    def _build(self) -> None:
        if len(np.unique(self.keys)) != len(self.keys):
            raise ModelsError("KeyTable keys must be distinct")
        bits = max(4, (4 * len(self.keys)).bit_length())
        self._mask = (1 << bits) - 1
        self._shift = np.uint64(64 - bits)
        self._at = np.full(1 << bits, -1, dtype=np.int64)
        self._key = np.full(1 << bits, -1, dtype=np.int64)
        pending = np.arange(len(self.keys))
        slot = self._slot_of(self.keys)
        while pending.size:
            free = self._at[slot] < 0
            # Of the keys that reach one free slot together, the first takes it.
            taken, first = np.unique(slot[free], return_index=True)
            winners = pending[free][first]
            self._at[taken] = winners
            self._key[taken] = self.keys[winners]
            waiting = np.ones(len(pending), dtype=bool)
            waiting[np.flatnonzero(free)[first]] = False
            pending, slot = pending[waiting], (slot[waiting] + 1) & self._mask

    def _slot_of(self, values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        # Fibonacci hashing: the top bits of the key times 2^64 / golden ratio.
        spread = values.astype(np.uint64) * _GOLDEN
        slots: npt.NDArray[np.int64] = (spread >> self._shift).astype(np.int64)
        return slots


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# Classes rather than closures: a fitted placer is pickled into the start-up cache.
@dataclass(frozen=True)
class _CharWbGrams:
    low: int
    high: int

    def __call__(self, text: str) -> list[str]:
        found: list[str] = []
        for word in text.split():
            padded = f" {word} "
            length = len(padded)
            for n in range(self.low, self.high + 1):
                if length <= n:  # as scikit-learn: a word no longer than n counts once
                    found.append(padded)
                    break
                found += [padded[i : i + n] for i in range(length - n + 1)]
        return found


@dataclass(frozen=True)
class _WordGrams:
    pattern: re.Pattern[str]
    low: int
    high: int

    def __call__(self, text: str) -> list[str]:
        tokens: list[str] = self.pattern.findall(text)
        found = list(tokens) if self.low == 1 else []
        for n in range(max(self.low, 2), min(self.high, len(tokens)) + 1):
            # The n slices end at different lengths on purpose: zip stops at the shortest.
            found += map(" ".join, zip(*(tokens[k:] for k in range(n)), strict=False))
        return found
